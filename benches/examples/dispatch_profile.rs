//! Dispatches one kind of interrupt `N` times, for instruction counting
//! under `valgrind --tool=callgrind` (repeatable on a busy machine, unlike
//! timings). Run it twice with different `N`: the difference divided by
//! the difference of `N` is the cost of one dispatch without the setup.
//!
//! ```text
//! cargo build --release -p irqcore-benches --example dispatch_profile
//! valgrind --tool=callgrind target/release/examples/dispatch_profile edge 100000
//! ```
//!
//! Kinds: `edge`, `fasteoi`, `percpu`, `shared4` (a level line with four
//! handlers), `fn_table`, `mutex_btreemap`.

use irqcore::FlowKind;
use irqcore_benches::*;
use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "edge".into());
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    set_current_cpu(0);
    let core = new_core(1024);
    let naive = MutexRegistry::new();
    naive.register(32, Box::new(|_| hit(0)));
    let flow = match kind.as_str() {
        "edge" => Some((FlowKind::Edge, 1)),
        "fasteoi" => Some((FlowKind::FastEoi, 1)),
        "percpu" => Some((FlowKind::PerCpu, 1)),
        "shared4" => Some((FlowKind::Level, 4)),
        "fn_table" | "mutex_btreemap" => None,
        other => {
            eprintln!("unknown kind {other}");
            std::process::exit(2);
        }
    };
    let irq = flow.map(|(f, h)| setup_irqcore_line(&core, 32, f, h, 0));
    for _ in 0..n {
        match (irq, kind.as_str()) {
            (Some(irq), _) => {
                let _ = core.handle_irq(black_box(irq));
            }
            (None, "fn_table") => {
                fn_table_dispatch(black_box(32));
            }
            _ => {
                naive.dispatch(black_box(32));
            }
        }
    }
    println!("{kind}: {n} dispatches, {} handler runs", hits(0));
}
