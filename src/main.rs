//! The `tanma-connector` binary: command-line parsing only; everything else is in the library.

fn main() {
    println!("tanma-connector {}", env!("CARGO_PKG_VERSION"));
}
