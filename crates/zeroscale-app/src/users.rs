//! `zeroscale users create-admin` (the first admin, or another), `zeroscale users
//! rename` and `zeroscale users create-key` (an API key for a user, printed once), from
//! the command line.

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::Context as _;
use zeroscale_core::config::LoadedConfig;
use zeroscale_core::domain::Role;
use zeroscale_db::domain::NewUser;

use crate::cli::UsersCommand;

/// The password: the first line of standard input (so it stays out of the process list
/// and the shell history).
fn read_password() -> anyhow::Result<String> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("cannot read the password from standard input")?;
    let password = input.lines().next().unwrap_or_default().to_owned();
    anyhow::ensure!(
        !password.is_empty(),
        "no password: pipe it on standard input (e.g. `zeroscale users create-admin --username admin < password.txt`)"
    );
    Ok(password)
}

pub(crate) async fn run(loaded: &LoadedConfig, command: UsersCommand) -> anyhow::Result<ExitCode> {
    match command {
        UsersCommand::CreateAdmin { username, credits } => {
            let password = read_password()?;
            let domain = crate::wiring::domain(&loaded.config).await?;
            crate::serve::auto_migrate(&loaded.config, domain.db()).await?;
            if domain
                .db()
                .pending_migrations()
                .await
                .map_err(anyhow::Error::from)?
                > 0
            {
                anyhow::bail!(
                    "the database has pending migrations: run `zeroscale migrate up` first"
                );
            }
            let user = domain
                .users()
                .register(NewUser {
                    username,
                    password,
                    role: Role::Admin,
                    credits,
                })
                .await
                .map_err(anyhow::Error::from)?;
            println!("created admin {} (id {})", user.username, user.id);
            Ok(ExitCode::SUCCESS)
        }
        UsersCommand::Rename { from, to } => {
            // No migration first: this settles the names the newest one refuses.
            let domain = crate::wiring::domain(&loaded.config).await?;
            let id = domain
                .users()
                .rename(&from, &to)
                .await
                .map_err(anyhow::Error::from)?;
            println!("renamed `{from}` to `{to}` (id {id})");
            Ok(ExitCode::SUCCESS)
        }
        UsersCommand::CreateKey {
            username,
            client_name,
        } => {
            let domain = crate::wiring::domain(&loaded.config).await?;
            crate::serve::auto_migrate(&loaded.config, domain.db()).await?;
            let user = domain
                .users()
                .by_username(&username)
                .await
                .map_err(anyhow::Error::from)?;
            let created = domain
                .api_keys()
                .create(zeroscale_db::domain::NewApiKey {
                    user_id: user.id,
                    client_name,
                    ..Default::default()
                })
                .await
                .map_err(anyhow::Error::from)?;
            // The key alone on stdout, so scripts can capture it.
            println!("{}", created.plaintext);
            eprintln!(
                "created API key {} ({}) for {username}; it is not shown again",
                created.key.id, created.key.prefix
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
