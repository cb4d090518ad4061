//! The layers of `src/` (docs/architecture.md), checked from the source text: a module imports
//! only the layers below it, and no two modules of one layer import each other in a circle.
//!
//! A reference is any `crate::<module>` path outside comments and `#[cfg(test)]` blocks (a `use`
//! line, a grouped `use crate::{a, b}`, or a path written inline), and inside a layer any
//! `super::<sibling>` path. A layer's `mod.rs` is its facade: it declares the layer's modules
//! and is not part of the sibling graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom to top. Modules in one entry are peers and may not import each other.
const LAYERS: &[&[&str]] = &[
    &["limits"],
    &["config"],
    &["data"],
    &["model", "diffusion"],
    &["sophon"],
    &["run"],
    &["app"],
];

fn rank(layer: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&layer))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `src/` (`src/sophon/attack.rs` → `["sophon", "attack"]`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its `#[cfg(test)]` tail.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `prefix` path in `code` as its segments, with grouped imports (`prefix{a, b::c}`)
/// expanded one level.
fn paths(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                out.push(segments(item.trim()));
            }
        } else {
            out.push(segments(rest));
        }
    }
    out.retain(|p| !p.is_empty());
    out
}

fn segments(text: &str) -> Vec<String> {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(text.len());
    text[..end]
        .split("::")
        .take_while(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Module → the modules it refers to (as module paths that exist).
fn graph(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(src, f)).collect();
    let longest = |path: &[String]| {
        (1..=path.len())
            .rev()
            .map(|k| path[..k].to_vec())
            .find(|p| modules.contains(p))
    };
    let mut edges = BTreeMap::new();
    for file in &files {
        let module = module_of(src, file);
        let code = code(&std::fs::read_to_string(file).unwrap());
        let mut to = BTreeSet::new();
        for p in paths(&code, "crate::") {
            to.extend(longest(&p));
        }
        let is_facade = file.file_name().is_some_and(|n| n == "mod.rs");
        if module.len() == 2 && !is_facade {
            for p in paths(&code, "super::") {
                let mut full = vec![module[0].clone()];
                full.extend(p);
                to.extend(longest(&full));
            }
        }
        to.remove(&module);
        edges.insert(module, to);
    }
    edges
}

/// A cycle among `nodes` under `edges`, if any (depth-first search).
fn find_cycle(
    nodes: &BTreeSet<Vec<String>>,
    edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
) -> Option<Vec<Vec<String>>> {
    fn visit(
        n: &Vec<String>,
        nodes: &BTreeSet<Vec<String>>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        stack: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(n.clone());
            return Some(cycle);
        }
        if !done.insert(n.clone()) {
            return None;
        }
        stack.push(n.clone());
        for m in edges
            .get(n)
            .into_iter()
            .flatten()
            .filter(|m| nodes.contains(*m))
        {
            if let Some(c) = visit(m, nodes, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    nodes
        .iter()
        .find_map(|n| visit(n, nodes, edges, &mut Vec::new(), &mut done))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn show(path: &[String]) -> String {
    path.join("::")
}

#[test]
fn no_layer_imports_one_above_it_or_a_peer() {
    let edges = graph(&src());
    let mut wrong = Vec::new();
    for (from, tos) in &edges {
        let Some(from_rank) = from.first().and_then(|l| rank(l)) else {
            continue; // lib.rs and main.rs sit above every layer.
        };
        for to in tos {
            let to_rank = rank(&to[0]).unwrap_or(usize::MAX);
            if to[0] != from[0] && to_rank >= from_rank {
                wrong.push(format!("{} imports {}", show(from), show(to)));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers of docs/architecture.md:\n  {}",
        wrong.join("\n  ")
    );
    // Every top-level module has a place in the order.
    for module in edges.keys().filter(|m| m.len() == 1) {
        let name = &module[0];
        assert!(
            ["lib", "main"].contains(&name.as_str()) || rank(name).is_some(),
            "src/{name} has no layer: add it to LAYERS here and to docs/architecture.md"
        );
    }
}

#[test]
fn no_two_modules_of_a_layer_import_each_other_in_a_circle() {
    let edges = graph(&src());
    for layer in LAYERS.iter().flat_map(|l| l.iter()) {
        let nodes: BTreeSet<Vec<String>> = edges
            .keys()
            .filter(|m| m.len() >= 2 && m[0] == *layer)
            .cloned()
            .collect();
        if let Some(cycle) = find_cycle(&nodes, &edges) {
            let names: Vec<String> = cycle.iter().map(|m| show(m)).collect();
            panic!("an import cycle in src/{layer}: {}", names.join(" → "));
        }
    }
}

/// The checker sees what it must: an upward import and a cycle written into a copy of the tree
/// are both found (so the two tests above cannot pass by reading nothing).
#[test]
fn the_layer_check_finds_an_upward_import_and_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let write = |rel: &str, text: &str| {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("data/mod.rs", "pub mod a;\npub mod b;\n");
    write(
        "data/a.rs",
        "use super::b::Thing; // a comment: crate::app\n",
    );
    write(
        "data/b.rs",
        "use crate::{config::X, data::a::Other};\nfn f() { crate::app::open(); }\n",
    );
    write("app/mod.rs", "pub fn open() {}\n");
    write("config/mod.rs", "pub struct X;\n");
    let edges = graph(dir.path());
    let b = vec!["data".to_string(), "b".to_string()];
    let app = vec!["app".to_string()];
    assert!(edges[&b].contains(&app), "{edges:?}");
    assert!(edges[&b].contains(&vec!["config".to_string()]));
    let a = vec!["data".to_string(), "a".to_string()];
    assert!(!edges[&a].contains(&app), "comments are not code");
    let nodes: BTreeSet<_> = [a, b].into_iter().collect();
    assert!(find_cycle(&nodes, &edges).is_some());
}
