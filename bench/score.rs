//! `score REPORT.json TRUTH.jsonl`: compares a report of a busy capture with its truth
//! (`racetrace_synth::score`) and prints the figures.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(report), Some(truth)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: score REPORT.json TRUTH.jsonl");
        std::process::exit(2);
    };
    let read = |p: &str| {
        std::fs::read_to_string(p).unwrap_or_else(|e| {
            eprintln!("score: {p}: {e}");
            std::process::exit(2);
        })
    };
    let report: serde_json::Value = serde_json::from_str(&read(report)).unwrap_or_else(|e| {
        eprintln!("score: {report}: {e}");
        std::process::exit(2);
    });
    let truth = racetrace_synth::score::read_truth(&read(truth));
    println!("{}", racetrace_synth::score::score(&report, &truth));
}
