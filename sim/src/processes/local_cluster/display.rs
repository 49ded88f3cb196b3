//! Showing a local cluster live: on a terminal one line per node refreshed
//! in place (indicatif), elsewhere a plain line every
//! [`PLAIN_LINE_INTERVAL`]. Events (kills, elections, restarts) print as
//! lines above the live view.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use raft::NodeId;

use super::monitor::{ClusterView, NodeView};

/// How often the plain output prints a line.
pub const PLAIN_LINE_INTERVAL: Duration = Duration::from_secs(1);

/// The live view of a terminal.
struct LiveView {
    bars: MultiProgress,
    header: ProgressBar,
    nodes: BTreeMap<NodeId, ProgressBar>,
}

/// The cluster's picture on stdout.
pub struct Display {
    live: Option<LiveView>,
    last_plain_line: Option<Instant>,
}

fn line_bar(bars: &MultiProgress) -> ProgressBar {
    let style = ProgressStyle::with_template("{msg}").expect("a constant template");
    bars.add(ProgressBar::new_spinner().with_style(style))
}

impl Display {
    /// A live view of `nodes` when `terminal`, plain lines otherwise.
    pub fn new(nodes: impl IntoIterator<Item = NodeId>, terminal: bool) -> Display {
        let live = terminal.then(|| {
            let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
            let header = line_bar(&bars);
            let nodes = nodes.into_iter().map(|id| (id, line_bar(&bars))).collect();
            LiveView {
                bars,
                header,
                nodes,
            }
        });
        Display {
            live,
            last_plain_line: None,
        }
    }

    /// Prints one event line.
    pub fn event(&self, text: &str) {
        match &self.live {
            Some(live) => {
                if live.bars.println(text).is_err() {
                    println!("{text}");
                }
            }
            None => println!("{text}"),
        }
    }

    /// Shows `view` under a `headline` (the workload's figures).
    pub fn refresh(&mut self, view: &ClusterView, headline: &str) {
        let now = Instant::now();
        match &self.live {
            Some(live) => {
                live.header.set_message(headline.to_string());
                for (id, bar) in &live.nodes {
                    if let Some(node) = view.nodes.get(id) {
                        bar.set_message(node_line(*id, node, now));
                    }
                }
            }
            None => {
                if self
                    .last_plain_line
                    .is_some_and(|last| now.duration_since(last) < PLAIN_LINE_INTERVAL)
                {
                    return;
                }
                self.last_plain_line = Some(now);
                let nodes: Vec<String> = view
                    .nodes
                    .iter()
                    .map(|(id, node)| compact_node(*id, node, now))
                    .collect();
                println!("{headline} | {}", nodes.join(" | "));
            }
        }
    }

    /// Removes the live view (the summary prints after it).
    pub fn finish(&mut self) {
        if let Some(live) = self.live.take() {
            live.header.finish_and_clear();
            for bar in live.nodes.values() {
                bar.finish_and_clear();
            }
            let _ = live.bars.clear();
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        self.finish();
    }
}

fn contact(node: &NodeView, now: Instant) -> String {
    node.last_contact(now)
        .map_or("-".to_string(), |age| format!("{} ms", age.as_millis()))
}

/// The terminal line of one node (it fits 80 columns).
fn node_line(id: NodeId, node: &NodeView, now: Instant) -> String {
    let role = node.role(id).name();
    match node.sample {
        Some(sample) => format!(
            "node {:<2} {role:<11} term {:<4} commit {:<7} applied {:<7} last contact {}",
            id.get(),
            sample.term,
            sample.commit_index,
            sample.applied_index,
            contact(node, now)
        ),
        None => format!(
            "node {:<2} {role:<11} last contact {}",
            id.get(),
            contact(node, now)
        ),
    }
}

/// The plain-output fragment of one node.
fn compact_node(id: NodeId, node: &NodeView, now: Instant) -> String {
    let role = node.role(id).name();
    match node.sample {
        Some(sample) => format!(
            "{} {role} term={} commit={} applied={} contact={}",
            id.get(),
            sample.term,
            sample.commit_index,
            sample.applied_index,
            contact(node, now).replace(' ', "")
        ),
        None => format!(
            "{} {role} contact={}",
            id.get(),
            contact(node, now).replace(' ', "")
        ),
    }
}
