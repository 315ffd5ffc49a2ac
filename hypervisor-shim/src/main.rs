//! `ecs-shim`: the eCS host (skeleton).
fn main() {
    eprintln!("ecs-shim: not built yet");
    std::process::exit(2);
}
