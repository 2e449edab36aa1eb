//! The top-level modules form a one-way graph: no module reaches (through `crate::…`) a
//! module that reaches back to it, directly or through others. Checked on the sources, so
//! a new cycle fails the suite with its path.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Cycles known and still to be cut, each as `a -> b` edges that may remain. Keep this
/// empty; an entry needs a note in `docs/architecture.md`.
const KNOWN: &[(&str, &str)] = &[];

fn top_level_modules(src: &Path) -> BTreeSet<String> {
    std::fs::read_dir(src)
        .unwrap()
        .filter_map(|entry| {
            let path = entry.unwrap().path();
            let stem = path.file_stem()?.to_str()?.to_string();
            let is_module = path.extension().is_some_and(|e| e == "rs")
                && !matches!(stem.as_str(), "lib" | "main")
                && !stem.ends_with("_tests");
            is_module.then_some(stem)
        })
        .collect()
}

/// Every `.rs` file of module `name`: `name.rs` and everything under `name/`.
fn files_of(src: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut files = vec![src.join(format!("{name}.rs"))];
    let mut dirs = vec![src.join(name)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The top-level modules a source text names as `crate::x` (also inside `use crate::{x, y}`).
fn references(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group
                .split('}')
                .next()
                .unwrap_or_default()
                .split(',')
                .map(|item| item.trim().split("::").next().unwrap_or_default())
                .collect(),
            None => vec![
                rest.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or_default(),
            ],
        };
        found.extend(
            names
                .into_iter()
                .filter(|n| modules.contains(*n))
                .map(str::to_string),
        );
    }
    found
}

#[test]
fn top_level_modules_have_no_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = top_level_modules(&src);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for module in &modules {
        let mut out = BTreeSet::new();
        for file in files_of(&src, module) {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            out.extend(references(&text, &modules));
        }
        out.remove(module);
        out.retain(|to| !KNOWN.contains(&(module.as_str(), to.as_str())));
        edges.insert(module.clone(), out);
    }
    // Depth-first search for a back edge; report the cycle's path.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for module in &modules {
        if let Some(cycle) = visit(module, &edges, &mut Vec::new(), &mut done) {
            panic!("module cycle: {}", cycle.join(" -> "));
        }
    }
    // The graph is what the layers say: the store and the leaves import no upper layer.
    for (low, high) in [
        ("store", "router"),
        ("store", "api"),
        ("hub", "api"),
        ("router", "api"),
        ("ids", "auth"),
    ] {
        assert!(!edges[low].contains(high), "{low} must not import {high}");
    }
}
