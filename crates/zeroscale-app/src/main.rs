//! The `zeroscale` binary: the server of [`zeroscale_app`] with nothing added.

fn main() -> std::process::ExitCode {
    zeroscale_app::App::new().run()
}
