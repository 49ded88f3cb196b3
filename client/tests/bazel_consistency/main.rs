//! Keeps the Bazel files in step with the Cargo workspace.
//!
//! No Bazel build can run on our machines (they cannot reach the Bazel
//! Central Registry), so this test is what notices drift. Cargo is the source
//! of truth: `cargo metadata` lists every library, binary, test, example and
//! build script, and each must have a Bazel rule with the same crate root
//! that depends on the same crates of this workspace (with the same
//! features) and on the crates.io ones through `all_crate_deps`. Every file,
//! glob and label of ours that the Bazel files name must exist, MODULE.bazel
//! must read every manifest, and `.bazelrc` must end by importing the
//! git-ignored `.bazelrc.local`. Two things a file-by-file comparison cannot
//! see are checked too: each binary and test links one crate of each name,
//! with the features Cargo would unify (`graphs`), and MODULE.bazel names
//! only module versions and target triples listed, with the date they were
//! checked, in `bazel/published_versions.txt` (`registry`).
//!
//! The Bazel files are read line by line, as buildifier formats them: a call
//! opens at the start of a line and closes with `)` alone on a line, and each
//! of its attributes starts on a line indented by four spaces. A file in any
//! other shape fails the test rather than going unchecked.

mod graphs;
mod registry;
mod workspace;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use workspace::{
    assert_reported, glob_matches, load, local_label, read_rules, rule_mut, set_attribute,
    string_literals, walk, workspace_root, Bazel, Package, Rule, Target,
};

/// Every file, glob and label of ours named by the Bazel files exists.
fn missing_paths_and_labels(bazel: &Bazel) -> Vec<String> {
    let mut problems = Vec::new();
    let packages = bazel.packages.iter().map(|(package, rules)| {
        let shown = format!("{package}/BUILD.bazel");
        (
            shown.trim_start_matches('/').to_owned(),
            package.as_str(),
            rules,
        )
    });
    let module = ("MODULE.bazel".to_owned(), "", &bazel.module);
    for (shown, package, rules) in packages.chain([module]) {
        let mut files = Vec::new();
        walk(&bazel.root.join(package), "", false, &mut files);
        for rule in rules {
            for (key, value) in &rule.attributes {
                let paths = ["srcs", "data", "compile_data", "crate_root"].contains(&key.as_str());
                for (text, in_glob) in string_literals(value) {
                    // A label inside a command, as in tar's mtree lines.
                    let label = match text.split("$(execpath ").nth(1) {
                        Some(rest) => rest.trim_end_matches(')'),
                        None => text.as_str(),
                    };
                    let why = if in_glob {
                        let matched = files.iter().any(|file| glob_matches(&text, file));
                        (!matched).then(|| format!("glob `{text}` matches no file"))
                    } else if label.starts_with([':', '/', '@']) {
                        bazel.missing(package, label)
                    } else if paths && !files.contains(&text) {
                        Some(format!("no file {text}"))
                    } else {
                        None
                    };
                    let rule_name = format!("{} `{}`", rule.kind, rule.name());
                    problems.extend(why.map(|why| format!("{shown}: {rule_name}: {why}")));
                }
            }
        }
    }
    problems
}

/// The problems with `rule`'s deps: it must name the library of each
/// workspace member Cargo gives the target (with the same features), its own
/// package's library when `own_library`, and `all_crate_deps` for the
/// crates.io dependencies of each of `kinds`.
fn dependency_problems(
    packages: &[Package],
    bazel: &Bazel,
    package: &Package,
    rule: &Rule,
    kinds: &[&str],
    own_library: bool,
) -> Vec<String> {
    let shown = format!(
        "{}/BUILD.bazel: {} `{}`",
        package.directory,
        rule.kind,
        rule.name()
    );
    let of_kinds = package
        .dependencies
        .iter()
        .filter(|dependency| kinds.contains(&dependency.kind.as_str()));
    let mut wanted: Vec<(&str, BTreeSet<String>)> = of_kinds
        .filter_map(|dependency| Some((dependency.member.as_deref()?, dependency.features.clone())))
        .collect();
    if own_library && package.targets.iter().any(|target| target.kind == "lib") {
        wanted.push((&package.directory, BTreeSet::new()));
    }
    let mut problems = Vec::new();
    // A library may carry more features than this edge asks for: Cargo
    // unifies features over a graph, and graphs::features_not_unified checks
    // that each graph gets exactly the union.
    for (member, features) in wanted {
        let library = packages
            .iter()
            .filter(|package| package.directory == member)
            .flat_map(|package| &package.targets)
            .find(|target| target.kind == "lib");
        let found = rule.strings("deps").iter().any(|(label, _)| {
            let Some((label_package, name)) = local_label(&package.directory, label) else {
                return false;
            };
            bazel.rule(&label_package, &name).is_some_and(|dependency| {
                label_package == member
                    && dependency.kind == "rust_library"
                    && dependency.string("crate_root").as_ref()
                        == library.map(|target| &target.source)
                    && dependency.set("crate_features").is_superset(&features)
            })
        });
        if !found {
            let features = match features.is_empty() {
                true => "no crate_features".to_owned(),
                false => format!("crate_features = {features:?}"),
            };
            problems.push(format!(
                "{shown}: deps must name the rust_library of {member}/ with {features}, as \
                 Cargo gives it that crate"
            ));
        }
    }
    for kind in kinds {
        let argument = if *kind == "dev" { "normal_dev" } else { kind };
        let external = package
            .dependencies
            .iter()
            .any(|dependency| dependency.kind == *kind && dependency.member.is_none());
        if external
            && !rule
                .attribute("deps")
                .contains(&format!("{argument} = True"))
        {
            problems.push(format!(
                "{shown}: Cargo gives it {kind} dependencies from crates.io; add \
                 all_crate_deps({argument} = True) to deps"
            ));
        }
    }
    problems
}

/// Every Cargo target has its Bazel rule, with the same crate root and deps.
fn missing_targets(packages: &[Package], bazel: &Bazel) -> Vec<String> {
    let mut problems = Vec::new();
    for package in packages {
        let directory = package.directory.as_str();
        if !bazel.packages.contains_key(directory) {
            problems.push(format!(
                "package `{}` has no {directory}/BUILD.bazel",
                package.name
            ));
            continue;
        }
        for target in &package.targets {
            let (kind, name, source) = (target.kind.as_str(), &target.name, &target.source);
            let (rule_kinds, kinds, own_library): (&[&str], &[&str], bool) = match kind {
                "lib" => (&["rust_library"], &["normal"], false),
                "bin" => (&["rust_binary"], &["normal"], true),
                "custom-build" => (&["cargo_build_script"], &["build"], false),
                "test" => (&["rust_test"], &["normal", "dev"], true),
                _ => (&["rust_binary", "rust_test"], &["normal", "dev"], true),
            };
            let rules: Vec<&Rule> = bazel
                .rules(directory)
                .filter(|rule| {
                    rule_kinds.contains(&rule.kind.as_str())
                        && rule.string("crate_root").as_ref() == Some(source)
                })
                .filter(|rule| match kind {
                    "lib" => rule.string("crate_name").unwrap_or(rule.name()) == *name,
                    "bin" => rule.name() == *name,
                    _ => true,
                })
                .collect();
            if rules.is_empty() {
                let named = if ["lib", "bin"].contains(&kind) {
                    format!(" for `{name}`")
                } else {
                    String::new()
                };
                problems.push(format!(
                    "{directory}/{source}: Cargo's {kind} target `{name}` has no {}{named} \
                     with crate_root = \"{source}\" in {directory}/BUILD.bazel",
                    rule_kinds.join(" or ")
                ));
            }
            for rule in &rules {
                problems.extend(dependency_problems(
                    packages,
                    bazel,
                    package,
                    rule,
                    kinds,
                    own_library,
                ));
            }
            if let ("custom-build", Some(script)) = (kind, rules.first()) {
                // Cargo gives the library its build script's output (OUT_DIR).
                let label = format!(":{}", script.name());
                for library in bazel.rules(directory).filter(|rule| {
                    rule.kind == "rust_library" && !rule.set("deps").contains(&label)
                }) {
                    problems.push(format!(
                        "{directory}/BUILD.bazel: rust_library `{}` must list the build \
                         script {label} in deps",
                        library.name()
                    ));
                }
            }
            // The library everyone may use: no extra features, no narrowed
            // visibility (the simulator's variants have both or one).
            let library = rules.iter().find(|rule| {
                rule.attribute("crate_features").is_empty()
                    && rule.attribute("visibility").is_empty()
            });
            if let ("lib", Some(library)) = (kind, library) {
                problems.extend(library_test_problems(
                    packages, bazel, package, target, library,
                ));
            }
        }
    }
    problems
}

/// Cargo runs a library's unit and doc tests, so Bazel needs a rust_test and a
/// rust_doc_test of `library`.
fn library_test_problems(
    packages: &[Package],
    bazel: &Bazel,
    package: &Package,
    target: &Target,
    library: &Rule,
) -> Vec<String> {
    let mut problems = Vec::new();
    let directory = &package.directory;
    let crate_label = format!(":{}", library.name());
    for (test_kind, wanted) in [
        ("rust_test", target.test),
        ("rust_doc_test", target.doctest),
    ] {
        let mut rules = bazel.rules(directory);
        let test = rules.find(|rule| {
            rule.kind == test_kind && rule.string("crate").as_ref() == Some(&crate_label)
        });
        match test {
            Some(test) if test_kind == "rust_test" => {
                let dev = dependency_problems(packages, bazel, package, test, &["dev"], false);
                problems.extend(dev);
            }
            None if wanted => problems.push(format!(
                "{directory}/BUILD.bazel: `cargo test` tests `{}`; add \
                 {test_kind}(crate = \"{crate_label}\")",
                target.name
            )),
            _ => {}
        }
    }
    problems
}

/// MODULE.bazel reads the lock file and every manifest, with a toolchain at
/// least as new as each package's rust-version.
fn module_problems(packages: &[Package], bazel: &Bazel) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(from_cargo) = bazel
        .module
        .iter()
        .find(|rule| rule.kind == "crate.from_cargo")
    else {
        return vec!["MODULE.bazel has no crate.from_cargo(...)".into()];
    };
    if from_cargo.string("cargo_lockfile").as_deref() != Some("//:Cargo.lock") {
        problems
            .push("MODULE.bazel: crate.from_cargo needs cargo_lockfile = \"//:Cargo.lock\"".into());
    }
    let mut manifests = BTreeSet::from(["//:Cargo.toml".to_owned()]);
    manifests.extend(
        packages
            .iter()
            .map(|package| format!("//{}:Cargo.toml", package.directory)),
    );
    if from_cargo.set("manifests") != manifests {
        problems.push(format!(
            "MODULE.bazel: crate.from_cargo needs manifests = {manifests:?}"
        ));
    }
    let numbers = |version: &str| -> Vec<u64> {
        version
            .split('.')
            .map(|part| part.parse().unwrap_or(0))
            .collect()
    };
    let toolchain = bazel
        .module_assignments
        .get("RUST_VERSION")
        .map_or(Vec::new(), |version| numbers(version));
    for package in packages {
        if package
            .rust_version
            .as_deref()
            .is_some_and(|minimum| toolchain < numbers(minimum))
        {
            problems.push(format!(
                "MODULE.bazel: RUST_VERSION is older than `{}`'s rust-version",
                package.name
            ));
        }
    }
    problems
}

/// `.bazelrc` ends by importing `.bazelrc.local`, which git ignores.
fn bazelrc_problems(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let bazelrc = fs::read_to_string(root.join(".bazelrc")).unwrap_or_default();
    let mut settings = bazelrc
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'));
    if settings.next_back() != Some("try-import %workspace%/.bazelrc.local") {
        problems.push(".bazelrc must end with `try-import %workspace%/.bazelrc.local`".into());
    }
    let gitignore = fs::read_to_string(root.join(".gitignore")).unwrap_or_default();
    if !gitignore
        .lines()
        .any(|line| line.trim() == "/.bazelrc.local")
    {
        problems.push(".gitignore must list /.bazelrc.local".into());
    }
    for file in [".bazelrc.local.example", ".bazelversion"] {
        if !root.join(file).exists() {
            problems.push(format!("{file} is missing"));
        }
    }
    problems
}

fn assert_none(what: &str, mut problems: Vec<String>) {
    problems.dedup();
    assert!(
        problems.is_empty(),
        "{what}:\n  - {}",
        problems.join("\n  - ")
    );
}

#[test]
fn every_cargo_target_has_a_bazel_rule_with_the_same_dependencies() {
    let (packages, bazel) = load();
    assert_none(
        "Bazel rules differ from Cargo's targets",
        missing_targets(&packages, &bazel),
    );
}

#[test]
fn every_file_glob_and_label_in_the_bazel_files_exists() {
    let (_, bazel) = load();
    assert_none(
        "Bazel files name what does not exist",
        missing_paths_and_labels(&bazel),
    );
}

#[test]
fn module_bazel_reads_every_manifest() {
    let (packages, bazel) = load();
    assert_none(
        "MODULE.bazel disagrees with Cargo",
        module_problems(&packages, &bazel),
    );
}

#[test]
fn every_binary_and_test_links_one_crate_of_each_name_with_cargos_features() {
    let (packages, bazel) = load();
    assert_none(
        "Bazel graphs differ from Cargo's",
        [
            graphs::crates_named_twice(&bazel),
            graphs::features_not_unified(&packages, &bazel),
        ]
        .concat(),
    );
}

#[test]
fn module_bazel_names_only_published_versions_and_supported_triples() {
    let (_, bazel) = load();
    let published = registry::published_versions(&bazel);
    assert_none(
        "MODULE.bazel names what may not exist",
        registry::module_source_problems(&bazel, &published),
    );
}

#[test]
fn bazelrc_imports_the_git_ignored_local_file_last() {
    assert_none(".bazelrc problems", bazelrc_problems(&workspace_root()));
}

// The checks must bite: each test below breaks the real workspace in memory.

#[test]
fn a_cargo_binary_without_a_bazel_rule_is_reported() {
    let (mut packages, bazel) = load();
    let sim = packages
        .iter_mut()
        .find(|package| package.name == "sim")
        .expect("sim");
    sim.targets.push(Target {
        name: "replay_all".into(),
        kind: "bin".into(),
        source: "src/bin/replay_all.rs".into(),
        test: true,
        doctest: false,
    });
    let problems = missing_targets(&packages, &bazel);
    assert_reported(
        &problems,
        "`replay_all` has no rust_binary for `replay_all`",
    );
}

#[test]
fn missing_dependencies_a_wrong_feature_and_an_unused_build_script_are_reported() {
    let (packages, mut bazel) = load();
    set_attribute(
        rule_mut(&mut bazel, "client", "raft_client"),
        "deps",
        "[\":raft_client_lib\"]",
    );
    set_attribute(
        rule_mut(&mut bazel, "sim", "sim_lib"),
        "deps",
        "[\"//raft\"] + all_crate_deps(normal = True)",
    );
    set_attribute(
        rule_mut(&mut bazel, "proto", "raft_proto"),
        "deps",
        "all_crate_deps(normal = True)",
    );
    let problems = missing_targets(&packages, &bazel);
    assert_reported(
        &problems,
        "rust_binary `raft_client`: deps must name the rust_library of proto/",
    );
    assert_reported(
        &problems,
        "rust_binary `raft_client`: Cargo gives it normal dependencies from crates.io",
    );
    assert_reported(
        &problems,
        "rust_library `sim_lib`: deps must name the rust_library of raft/ with crate_features = \
         {\"bug-injection\"}",
    );
    assert_reported(
        &problems,
        "rust_library `raft_proto` must list the build script",
    );
}

#[test]
fn a_missing_file_glob_package_and_rule_are_reported() {
    let (_, mut bazel) = load();
    let (broken, _) = read_rules(
        r#"rust_test(
    name = "broken",
    srcs = ["tests/no_such.rs"] + glob(["no_such/**/*.rs"]),
    crate_root = "tests/no_such.rs",
    deps = ["//no/such:package", ":no_such_rule", "@crates//:ignored"],
)"#,
    )
    .expect("readable");
    bazel.packages.get_mut("raft").expect("raft").extend(broken);
    let problems = missing_paths_and_labels(&bazel);
    assert_reported(&problems, "rust_test `broken`: no file tests/no_such.rs");
    assert_reported(&problems, "glob `no_such/**/*.rs` matches no file");
    assert_reported(&problems, "there is no no/such/BUILD.bazel");
    assert_reported(&problems, "no rule or file `no_such_rule` in //raft");
    assert_eq!(problems.len(), 5, "{problems:#?}");
}

#[test]
fn files_in_another_shape_are_refused() {
    for source in [
        "def rule(name):\n    pass\n",
        "rust_test(name = \"a\",\n",
        "rust_test(\n    name = \"a\"\n",
        "[x for x in y]\n",
    ] {
        assert!(read_rules(source).is_err(), "accepted: {source}");
    }
}

#[test]
fn globs_match_as_in_bazel() {
    assert!(glob_matches("src/**/*.rs", "src/lib.rs"));
    assert!(glob_matches("src/**/*.rs", "src/core/log.rs"));
    assert!(glob_matches("**/*.proto", "etcd/kv.proto"));
    assert!(!glob_matches("src/*.rs", "src/core/log.rs"));
    assert!(!glob_matches("*.proto", "raft.protobuf"));
}
