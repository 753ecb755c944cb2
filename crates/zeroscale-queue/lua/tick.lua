-- Only the prelude's tick: promotes due jobs and reclaims leases before a read.
return {'ok'}
