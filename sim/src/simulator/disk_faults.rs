//! Disk faults: what a crash does to the writes in flight (a torn write
//! keeps a prefix of them), and a bit flipped in a durable record while a
//! node is down, which its recovery detects, so that it refuses to start
//! for the rest of the run. The disk model itself is in [`crate::simulator::disk`].

use raft::{LogIndex, NodeId};

use crate::simulator::cluster::{position_of, Cluster, Event};
use crate::simulator::random::{chance, uniform};

impl Cluster {
    /// Now and then, aims a crash at `node` before a write it just started
    /// at `first_index`, due in `latency_us`, is durable, when the crash can
    /// tear something: two entries or more in flight, or a write replacing
    /// durable entries. Most crashes of the nemesis find nothing in flight,
    /// and such moments are few, so each is likely taken, up to a number of
    /// them per run.
    pub(crate) fn maybe_crash_mid_write(
        &mut self,
        node: NodeId,
        first_index: LogIndex,
        latency_us: u64,
    ) {
        let disk = &self.nodes[position_of(node)].disk;
        let can_tear = disk.entries_in_flight() >= 2 || first_index <= disk.log.last_index();
        if self.faults_active
            && can_tear
            && self.stats.crashes_aimed_mid_write < self.scenario.mid_write_crashes_max
            && chance(&mut self.rng, self.scenario.mid_write_crash_probability)
        {
            self.stats.crashes_aimed_mid_write += 1;
            let delay = uniform(&mut self.rng, 0, latency_us);
            self.schedule(delay, Event::CrashMidWrite(node));
        }
    }

    /// Now and then, aims a crash at `node` before the hard state it just
    /// started writing, due in `latency_us`, is durable: the moment when
    /// the outputs held behind it (a vote, a campaign's requests) must not
    /// have left.
    pub(crate) fn maybe_crash_before_hard_state_durable(&mut self, node: NodeId, latency_us: u64) {
        if self.faults_active
            && self.stats.crashes_aimed_at_hard_states < self.scenario.mid_write_crashes_max
            && chance(&mut self.rng, self.scenario.mid_write_crash_probability)
        {
            self.stats.crashes_aimed_at_hard_states += 1;
            let delay = uniform(&mut self.rng, 0, latency_us);
            self.schedule(delay, Event::CrashMidWrite(node));
        }
    }

    /// The crash of `victim`'s disk: it keeps a prefix of its writes in
    /// flight, and may be damaged while the node is down.
    pub(crate) fn crash_disk(&mut self, victim: NodeId) {
        let disk = &self.nodes[position_of(victim)].disk;
        let in_flight = disk.entries_in_flight();
        let records = disk.records_in_flight();
        let keep = if records > 0 && chance(&mut self.rng, self.scenario.torn_write_probability) {
            uniform(&mut self.rng, 0, records as u64 + 1) as usize
        } else {
            0
        };
        let report = self.nodes[position_of(victim)].disk.crash(keep);
        self.stats.replacements_cut_short += report.replacements_cut_short as u64;
        self.stats.hard_states_lost += report.hard_states_lost as u64;
        let kept = report.entries_kept;
        self.stats.unacknowledged_entries_kept += kept as u64;
        if 0 < kept && kept < in_flight {
            self.stats.torn_writes += 1;
        }
        if in_flight > 0 {
            self.trace_line(format!(
                "DISK {victim} kept {kept} of the {in_flight} entries in flight"
            ));
        }
        if report.hard_states_kept + report.hard_states_lost > 0 {
            self.trace_line(format!(
                "DISK {victim} kept {} and lost {} hard states in flight",
                report.hard_states_kept, report.hard_states_lost
            ));
        }
        if self.scenario.corrupt_disk == Some(victim) {
            self.maybe_corrupt(victim);
        }
    }

    /// Flips a bit in a durable record of `victim` that is not the last,
    /// unless a disk is corrupt already (the rest of the cluster must keep a
    /// quorum).
    fn maybe_corrupt(&mut self, victim: NodeId) {
        if self.nodes.iter().all(|node| node.disk.recover().is_ok()) {
            self.flip_random_bit(victim);
        }
    }

    /// Damages the record of a durable entry of `node`, which is down, that
    /// is not its log's last, chosen by the seed. Returns the entry; `None`
    /// when the log holds fewer than two entries.
    pub(crate) fn flip_random_bit(&mut self, node: NodeId) -> Option<LogIndex> {
        assert!(!self.is_alive(node), "a disk is damaged only while down");
        let candidates = self.nodes[position_of(node)].disk.entries_before_tail();
        if candidates.is_empty() {
            return None;
        }
        let entry = LogIndex(uniform(&mut self.rng, candidates.start, candidates.end));
        let disk = &mut self.nodes[position_of(node)].disk;
        disk.flip_bit(entry);
        let last_index = disk.log.last_index();
        self.stats.disks_corrupted += 1;
        self.trace_line(format!(
            "DISK flip a bit in {node}'s record of entry {entry} (its log ends at {last_index})"
        ));
        Some(entry)
    }

    /// Whether `node`'s disk recovers; one found corrupt is refused, and
    /// the node stays down.
    pub(crate) fn disk_allows_start(&mut self, node: NodeId) -> bool {
        let sim_node = &mut self.nodes[position_of(node)];
        let Err(corruption) = sim_node.disk.recover() else {
            return true;
        };
        if !sim_node.refused_to_start {
            sim_node.refused_to_start = true;
            self.stats.corrupt_disks_refused += 1;
        }
        self.trace_line(format!("DISK {node} refuses to start: {corruption}"));
        false
    }
}
