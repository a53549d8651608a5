//! `tdsql-protoc`: prints the path of the `protoc` binary vendored by `protoc-bin-vendored`.
//!
//! The Temporal SDK behind `tdsql-workflows` needs `protoc` at build time (through
//! `prost-wkt-types`), and users have only Rust and Docker. The xtask runs this tiny helper first
//! and hands its output to cargo as `PROTOC`, so neither the xtask nor the user installs protoc.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    match protoc_bin_vendored::protoc_bin_path() {
        Ok(path) => {
            let mut out = std::io::stdout().lock();
            match out.write_all(path.as_os_str().as_encoded_bytes()).and_then(|()| out.write_all(b"\n")) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("error: cannot write the protoc path to stdout: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(err) => {
            eprintln!("error: {err}; install protoc and set PROTOC to its path");
            ExitCode::FAILURE
        }
    }
}
