//! The `lattice` command. Placeholder until the CLI lands: prints its version and usage.
fn main() {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version") | Some("-V") => println!("lattice {}", env!("CARGO_PKG_VERSION")),
        _ => println!(
            "lattice {} — local-first replicated key-value store\n\nUSAGE: lattice [--version|--help]",
            env!("CARGO_PKG_VERSION")
        ),
    }
}
