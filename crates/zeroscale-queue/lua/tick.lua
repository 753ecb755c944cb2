-- Only the prelude's tick: promotes due jobs and reclaims leases before a read.
tick()
return {'ok'}
