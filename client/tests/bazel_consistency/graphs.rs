//! What each Bazel binary and test links: one crate of each name, and our
//! crates with the features Cargo would unify for that graph.
//!
//! Cargo builds one `raft` per build, with the union of the features its
//! dependents ask for. Bazel builds each `rust_library` target as written, so
//! two targets with the same `crate_name` can meet in one graph and their
//! types no longer agree (a `raft::NodeId` of one is not the other's). These
//! checks find such graphs before a Bazel build would.

use std::collections::{BTreeMap, BTreeSet};

use crate::workspace::{
    assert_reported, load, local_label, rule_mut, set_attribute, Bazel, Package, Rule,
};

/// A rule of ours, as (package, name).
pub type Label = (String, String);

pub fn shown(label: &Label) -> String {
    format!("//{}:{}", label.0, label.1)
}

/// The kinds of rule that are the root of a graph of their own.
const ROOTS: [&str; 3] = ["rust_binary", "rust_test", "rust_doc_test"];

/// The attributes through which a Rust rule links other Rust crates.
const LINKS: [&str; 3] = ["deps", "proc_macro_deps", "crate"];

/// The rust_library rules of ours that `root` links, directly or not.
pub fn reached_libraries<'a>(bazel: &'a Bazel, root: &Label) -> BTreeMap<Label, &'a Rule> {
    let mut reached = BTreeMap::new();
    let mut to_visit = vec![root.clone()];
    while let Some((package, name)) = to_visit.pop() {
        let Some(rule) = bazel.rule(&package, &name) else {
            continue;
        };
        for attribute in LINKS {
            for (text, _) in rule.strings(attribute) {
                let Some(label) = local_label(&package, &text) else {
                    continue;
                };
                let library = bazel
                    .rule(&label.0, &label.1)
                    .filter(|rule| rule.kind == "rust_library");
                if let Some(library) = library {
                    if reached.insert(label.clone(), library).is_none() {
                        to_visit.push(label);
                    }
                }
            }
        }
    }
    reached
}

/// The crate a rust_library builds: its `crate_name`, else its name.
fn crate_name(rule: &Rule) -> String {
    rule.string("crate_name").unwrap_or_else(|| rule.name())
}

/// Every binary and test rule of ours.
pub fn roots(bazel: &Bazel) -> Vec<(Label, &Rule)> {
    let all = bazel.packages.iter().flat_map(|(package, rules)| {
        rules
            .iter()
            .map(move |rule| ((package.clone(), rule.name()), rule))
    });
    all.filter(|(_, rule)| ROOTS.contains(&rule.kind.as_str()))
        .collect()
}

/// Roots that link two different targets building a crate of one name.
pub fn crates_named_twice(bazel: &Bazel) -> Vec<String> {
    let mut problems = Vec::new();
    for (root, _) in roots(bazel) {
        let mut by_crate: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (label, library) in reached_libraries(bazel, &root) {
            by_crate
                .entry(crate_name(library))
                .or_default()
                .push(shown(&label));
        }
        for (name, targets) in by_crate.into_iter().filter(|(_, found)| found.len() > 1) {
            problems.push(format!(
                "{}: links {} targets that build crate `{name}`: {}; Cargo would build one",
                shown(&root),
                targets.len(),
                targets.join(", ")
            ));
        }
    }
    problems
}

/// The features Cargo unifies for each workspace member (by directory) in a
/// graph made of `in_graph`'s packages, counting `dev` dependencies of the
/// root's own package when the root is a test.
fn unified_features(
    packages: &[Package],
    in_graph: &BTreeSet<String>,
    root_package: &str,
    root_is_test: bool,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut unified: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let members = packages
        .iter()
        .filter(|package| in_graph.contains(&package.directory));
    for package in members {
        let counted = |kind: &str| {
            kind == "normal" || (kind == "dev" && root_is_test && package.directory == root_package)
        };
        let dependencies = package
            .dependencies
            .iter()
            .filter(|dependency| counted(&dependency.kind));
        for dependency in dependencies {
            if let Some(member) = &dependency.member {
                let features = unified.entry(member.clone()).or_default();
                features.extend(dependency.features.iter().cloned());
                if dependency.uses_default_features {
                    features.insert("default".to_string());
                }
            }
        }
    }
    for (member, features) in &mut unified {
        if let Some(package) = packages.iter().find(|package| &package.directory == member) {
            *features = enabled_features(package, features);
        }
    }
    unified
}

/// `requested` and every feature of `package` they turn on in turn (as
/// Cargo passes them to rustc: `default` included; `dep:` entries and
/// other crates' features are not features of this crate).
fn enabled_features(package: &Package, requested: &BTreeSet<String>) -> BTreeSet<String> {
    let mut enabled = BTreeSet::new();
    let mut pending: Vec<String> = requested.iter().cloned().collect();
    while let Some(feature) = pending.pop() {
        let Some(enables) = package.features.get(&feature) else {
            continue;
        };
        if enabled.insert(feature) {
            pending.extend(
                enables
                    .iter()
                    .filter(|entry| !entry.starts_with("dep:") && !entry.contains('/'))
                    .cloned(),
            );
        }
    }
    enabled
}

/// Libraries of ours whose `crate_features` differ, in some root's graph,
/// from the union of the features Cargo's manifests ask for there.
pub fn features_not_unified(packages: &[Package], bazel: &Bazel) -> Vec<String> {
    let mut problems = Vec::new();
    for (root, rule) in roots(bazel) {
        let libraries = reached_libraries(bazel, &root);
        let mut in_graph: BTreeSet<String> = libraries.keys().map(|(p, _)| p.clone()).collect();
        in_graph.insert(root.0.clone());
        let root_is_test = rule.kind != "rust_binary";
        let unified = unified_features(packages, &in_graph, &root.0, root_is_test);
        for (label, library) in &libraries {
            let Some(wanted) = unified.get(&label.0) else {
                continue;
            };
            let built = library.set("crate_features");
            if &built != wanted {
                problems.push(format!(
                    "{}: links {} with crate_features {built:?}, but Cargo unifies {wanted:?} \
                     for it in this graph",
                    shown(&root),
                    shown(label)
                ));
            }
        }
    }
    problems
}

#[test]
fn two_crates_of_one_name_in_a_graph_are_reported() {
    // As the files were before the simulator had a raft_client of its own.
    let (_, mut bazel) = load();
    let sim_lib = rule_mut(&mut bazel, "sim", "sim_lib");
    let deps = sim_lib
        .attribute("deps")
        .replace(":raft_client_lib_for_sim", ":raft_client_lib");
    set_attribute(sim_lib, "deps", &deps);
    let problems = crates_named_twice(&bazel);
    assert_reported(
        &problems,
        "//sim:run_n_clients: links 2 targets that build crate `raft`: //raft:raft, \
         //raft:raft_bug_injection",
    );
}

#[test]
fn a_feature_cargo_would_not_unify_into_a_graph_is_reported() {
    let (packages, mut bazel) = load();
    // The real binary on the simulator's raft_client: bug injection in it.
    let binary = rule_mut(&mut bazel, "client", "raft_client");
    let deps = binary
        .attribute("deps")
        .replace(":raft_client_lib\"", ":raft_client_lib_for_sim\"")
        .replace("\"//raft\"", "\"//raft:raft_bug_injection\"");
    set_attribute(binary, "deps", &deps);
    let problems = features_not_unified(&packages, &bazel);
    assert_reported(
        &problems,
        "//client:raft_client: links //raft:raft_bug_injection with crate_features \
         {\"bug-injection\", \"default\", \"runtime\"}, but Cargo unifies {\"default\", \
         \"runtime\"} for it in this graph",
    );

    // The simulator's raft without the feature Cargo gives it there.
    let (_, mut bazel) = load();
    set_attribute(
        rule_mut(&mut bazel, "raft", "raft_bug_injection"),
        "crate_features",
        "[]",
    );
    let problems = features_not_unified(&packages, &bazel);
    assert_reported(
        &problems,
        "//sim:chaos: links //raft:raft_bug_injection with crate_features {}, but Cargo \
         unifies {\"bug-injection\", \"default\", \"runtime\"} for it in this graph",
    );

    // The library without the default features Cargo turns on.
    let (_, mut bazel) = load();
    set_attribute(
        rule_mut(&mut bazel, "raft", "raft"),
        "crate_features",
        "[\"default\"]",
    );
    let problems = features_not_unified(&packages, &bazel);
    assert_reported(
        &problems,
        "//client:raft_client: links //raft:raft with crate_features {\"default\"}, but Cargo \
         unifies {\"default\", \"runtime\"} for it in this graph",
    );
}
