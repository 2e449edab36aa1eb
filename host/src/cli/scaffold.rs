//! `switchboard plugin new NAME [--lang rust|python|js|c]`: a new plugin project that builds
//! as it is with the language's standard tools, with a working `message-pre-send` hook, a
//! native unit test, a manifest and a README. The file templates live in `scaffold/<lang>/`
//! next to this module, so they read (and diff) as the files they become.
//!
//! Everything a project needs from Switchboard comes from this binary, so it builds on a
//! machine with only the release binary and public registries: Python, JavaScript and C
//! projects get the exact WIT the binary speaks in `wit/`; a Rust crate gets a copy of the
//! guest SDK (with that WIT) in `switchboard-plugin-api/`, or depends on `--sdk PATH`.

use std::path::{Path, PathBuf};

use super::wit;

/// A language a plugin can be scaffolded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A crate for `wasm32-wasip2` using the guest SDK.
    Rust,
    /// A componentize-py project (PyPI).
    Python,
    /// A componentize-js project (npm).
    Js,
    /// A C project: wit-bindgen's C bindings, clang with wasi-libc, wasm-component-ld.
    C,
}

/// The tool versions the templates pin: the ones the test suite builds the templates with.
pub const COMPONENTIZE_PY: &str = "0.25.1";
pub const COMPONENTIZE_JS: &str = "0.23.0";
pub const WIT_BINDGEN: &str = "0.46.0";
pub const WASM_COMPONENT_LD: &str = "0.5.31";

/// The templates per language, with `{{placeholders}}` filled in by [`render`].
const RUST: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("scaffold/rust/Cargo.toml.tmpl")),
    ("src/lib.rs", include_str!("scaffold/rust/lib.rs.tmpl")),
    (
        "plugin.toml",
        include_str!("scaffold/rust/plugin.toml.tmpl"),
    ),
    ("README.md", include_str!("scaffold/rust/README.md.tmpl")),
    (".gitignore", include_str!("scaffold/rust/gitignore.tmpl")),
];
const PYTHON: &[(&str, &str)] = &[
    ("app.py", include_str!("scaffold/python/app.py.tmpl")),
    ("policy.py", include_str!("scaffold/python/policy.py.tmpl")),
    (
        "test_policy.py",
        include_str!("scaffold/python/test_policy.py.tmpl"),
    ),
    (
        "plugin.toml",
        include_str!("scaffold/python/plugin.toml.tmpl"),
    ),
    ("README.md", include_str!("scaffold/python/README.md.tmpl")),
    (".gitignore", include_str!("scaffold/python/gitignore.tmpl")),
];
const JS: &[(&str, &str)] = &[
    ("app.js", include_str!("scaffold/js/app.js.tmpl")),
    ("policy.js", include_str!("scaffold/js/policy.js.tmpl")),
    (
        "policy.test.js",
        include_str!("scaffold/js/policy.test.js.tmpl"),
    ),
    ("build.mjs", include_str!("scaffold/js/build.mjs.tmpl")),
    (
        "package.json",
        include_str!("scaffold/js/package.json.tmpl"),
    ),
    ("plugin.toml", include_str!("scaffold/js/plugin.toml.tmpl")),
    ("README.md", include_str!("scaffold/js/README.md.tmpl")),
    (".gitignore", include_str!("scaffold/js/gitignore.tmpl")),
];

const C: &[(&str, &str)] = &[
    ("app.c", include_str!("scaffold/c/app.c.tmpl")),
    ("policy.c", include_str!("scaffold/c/policy.c.tmpl")),
    ("policy.h", include_str!("scaffold/c/policy.h.tmpl")),
    (
        "test_policy.c",
        include_str!("scaffold/c/test_policy.c.tmpl"),
    ),
    ("Makefile", include_str!("scaffold/c/Makefile.tmpl")),
    ("plugin.toml", include_str!("scaffold/c/plugin.toml.tmpl")),
    ("README.md", include_str!("scaffold/c/README.md.tmpl")),
    (".gitignore", include_str!("scaffold/c/gitignore.tmpl")),
];

/// The guest SDK's sources, copied into a Rust project as `switchboard-plugin-api/`
/// (a unit test checks that this list names every file of `plugin-api/src`).
const SDK_SOURCES: &[(&str, &str)] = &[
    ("src/lib.rs", include_str!("../../../plugin-api/src/lib.rs")),
    ("src/bot.rs", include_str!("../../../plugin-api/src/bot.rs")),
    (
        "src/config.rs",
        include_str!("../../../plugin-api/src/config.rs"),
    ),
    (
        "src/http.rs",
        include_str!("../../../plugin-api/src/http.rs"),
    ),
    ("src/kv.rs", include_str!("../../../plugin-api/src/kv.rs")),
    ("src/log.rs", include_str!("../../../plugin-api/src/log.rs")),
    (
        "src/outcome.rs",
        include_str!("../../../plugin-api/src/outcome.rs"),
    ),
    (
        "src/rooms.rs",
        include_str!("../../../plugin-api/src/rooms.rs"),
    ),
    ("src/llm.rs", include_str!("../../../plugin-api/src/llm.rs")),
    (
        "src/testing.rs",
        include_str!("../../../plugin-api/src/testing.rs"),
    ),
    (
        "src/upload.rs",
        include_str!("../../../plugin-api/src/upload.rs"),
    ),
    // The `#[plugin]` attribute's crate, standalone as it is in the checkout.
    (
        "macros/Cargo.toml",
        include_str!("../../../plugin-api/macros/Cargo.toml"),
    ),
    (
        "macros/src/lib.rs",
        include_str!("../../../plugin-api/macros/src/lib.rs"),
    ),
];
/// The SDK's own manifest and the workspace's (where its dependency versions are set).
const SDK_MANIFEST: &str = include_str!("../../../plugin-api/Cargo.toml");
const WORKSPACE_MANIFEST: &str = include_str!("../../../Cargo.toml");
/// Where the SDK's bindings find the WIT, in the checkout and in a copy.
const SDK_WIT_IN_CHECKOUT: &str = "path: \"../wit\"";
const SDK_WIT_IN_COPY: &str = "path: \"wit\"";
/// The directory a Rust project keeps its copy of the SDK in.
const SDK_COPY_DIR: &str = "switchboard-plugin-api";

/// Names the generated code imports from the SDK; a plugin type must not shadow them.
const SDK_NAMES: &[&str] = &["Plugin", "Message", "PreSendOutcome", "HookSet"];

/// Words Rust (or Cargo, for library names) reserves; a crate cannot be named after them.
const RESERVED: &[&str] = &[
    "as", "async", "await", "box", "break", "const", "continue", "crate", "do", "dyn", "else",
    "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop",
    "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref", "return", "self",
    "static", "struct", "super", "test", "trait", "true", "try", "type", "typeof", "unsafe",
    "unsized", "use", "virtual", "where", "while", "yield", "core", "std", "alloc",
];

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("invalid plugin name {0:?}: {1}")]
    InvalidName(String, &'static str),
    #[error("{} already exists; refusing to overwrite it", .0.display())]
    Exists(PathBuf),
    #[error("{}: not the plugin SDK (no Cargo.toml for switchboard-plugin-api there)", .0.display())]
    NotAnSdk(PathBuf),
    #[error("--sdk applies to Rust plugins only")]
    SdkForOtherLanguage,
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What was created.
#[derive(Debug)]
pub struct Scaffolded {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    /// The command that builds the component, run in `dir`.
    pub build: String,
    /// The `.wasm` the build produces, relative to `dir`.
    pub component: String,
}

/// Create the project `NAME` in `lang` as `parent/NAME`. A Rust crate depends on the SDK at
/// `sdk` if given, else on a copy written next to it. Refuses an invalid name and an
/// existing directory.
pub fn scaffold(
    name: &str,
    parent: &Path,
    lang: Lang,
    sdk: Option<&Path>,
) -> Result<Scaffolded, ScaffoldError> {
    validate_name(name)?;
    let sdk = match sdk {
        Some(_) if lang != Lang::Rust => return Err(ScaffoldError::SdkForOtherLanguage),
        Some(sdk) => {
            let manifest = std::fs::read_to_string(sdk.join("Cargo.toml")).unwrap_or_default();
            if !manifest.contains("name = \"switchboard-plugin-api\"") {
                return Err(ScaffoldError::NotAnSdk(sdk.to_path_buf()));
            }
            // An absolute path keeps the crate building wherever it is moved on this machine.
            Some(
                std::path::absolute(sdk).map_err(|source| ScaffoldError::Io {
                    path: sdk.to_path_buf(),
                    source,
                })?,
            )
        }
        None => None,
    };
    let dir = parent.join(name);
    if dir.symlink_metadata().is_ok() {
        return Err(ScaffoldError::Exists(dir));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ScaffoldError::Io { path, source }
    };
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    // `create_dir` (not `_all`) fails if the directory appeared meanwhile: never write into
    // something that is not ours.
    std::fs::create_dir(&dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            ScaffoldError::Exists(dir.clone())
        } else {
            ScaffoldError::Io {
                path: dir.clone(),
                source: e,
            }
        }
    })?;
    let vars = Vars::new(name, sdk.as_deref());
    let mut files: Vec<(String, String)> = match lang {
        Lang::Rust => RUST,
        Lang::Python => PYTHON,
        Lang::Js => JS,
        Lang::C => C,
    }
    .iter()
    .map(|(relative, template)| (relative.to_string(), render(template, &vars)))
    .collect();
    match lang {
        Lang::Rust if sdk.is_none() => files.extend(sdk_copy()),
        Lang::Rust => {}
        Lang::Python | Lang::Js | Lang::C => files.extend(current_wit("wit")),
    }
    let mut written = Vec::new();
    for (relative, text) in files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, text).map_err(io(&path))?;
        written.push(path);
    }
    let (build, component) = match lang {
        Lang::Rust => (
            "cargo build --release --target wasm32-wasip2".to_string(),
            format!("target/wasm32-wasip2/release/{}.wasm", vars.crate_name),
        ),
        Lang::Python => (
            format!("componentize-py -d wit -w plugin componentize app -o {name}.wasm"),
            format!("{name}.wasm"),
        ),
        Lang::Js => (
            "npm install && npm run build".to_string(),
            format!("{name}.wasm"),
        ),
        Lang::C => ("make".to_string(), format!("{name}.wasm")),
    };
    Ok(Scaffolded {
        dir,
        files: written,
        build,
        component,
    })
}

/// The WIT files of the newest interface version, under `dir/`.
fn current_wit(dir: &str) -> impl Iterator<Item = (String, String)> + '_ {
    wit::VERSIONS[0]
        .files
        .iter()
        .map(move |(file, text)| (format!("{dir}/{file}"), text.to_string()))
}

/// The guest SDK as a standalone crate under [`SDK_COPY_DIR`]: its sources, the WIT it
/// binds, and a manifest with the workspace's settings written out.
fn sdk_copy() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = SDK_SOURCES
        .iter()
        .map(|(file, text)| {
            (
                format!("{SDK_COPY_DIR}/{file}"),
                text.replace(SDK_WIT_IN_CHECKOUT, SDK_WIT_IN_COPY),
            )
        })
        .collect();
    files.extend(current_wit(&format!("{SDK_COPY_DIR}/wit")).collect::<Vec<_>>());
    files.push((format!("{SDK_COPY_DIR}/Cargo.toml"), sdk_manifest()));
    files
}

/// The SDK's manifest for a copy outside the workspace: its own name, version and
/// description, and its dependencies with what the workspace sets for them written out (so
/// a copy builds what the checkout builds).
fn sdk_manifest() -> String {
    let sdk: toml::Table = toml::from_str(SDK_MANIFEST).unwrap_or_default();
    let workspace: toml::Table = toml::from_str(WORKSPACE_MANIFEST).unwrap_or_default();
    let workspace_dependency = |name: &str| {
        workspace
            .get("workspace")
            .and_then(|w| w.get("dependencies"))
            .and_then(|d| d.get(name))
            .cloned()
    };
    let mut package = toml::Table::new();
    for key in ["name", "version", "description"] {
        if let Some(value) = sdk
            .get("package")
            .and_then(|p| p.get(key))
            .filter(|v| v.is_str())
        {
            package.insert(key.into(), value.clone());
        }
    }
    package.insert("edition".into(), "2024".into());
    package.insert("publish".into(), false.into());
    let mut dependencies = toml::Table::new();
    if let Some(declared) = sdk.get("dependencies").and_then(toml::Value::as_table) {
        for (name, spec) in declared {
            let inherited = spec
                .get("workspace")
                .and_then(toml::Value::as_bool)
                .unwrap_or(false);
            let spec = if inherited {
                workspace_dependency(name).unwrap_or_else(|| "*".into())
            } else {
                spec.clone()
            };
            dependencies.insert(name.clone(), spec);
        }
    }
    let mut manifest = toml::Table::new();
    manifest.insert("package".into(), package.into());
    manifest.insert("dependencies".into(), dependencies.into());
    format!(
        "# The Switchboard guest SDK, as written by `switchboard plugin new` (the copy that\n\
         # matches the binary that wrote it, and the plugin interface in wit/).\n{}",
        toml::to_string(&manifest).unwrap_or_default()
    )
}

/// The manifest's rule for plugin names (1-64 of `[a-z0-9_-]`), plus what a Rust crate
/// needs: a leading letter and not a reserved word.
pub fn validate_name(name: &str) -> Result<(), ScaffoldError> {
    let invalid = |why| Err(ScaffoldError::InvalidName(name.to_string(), why));
    if !switchboard::names::is_identifier(name, switchboard::names::MAX_PLUGIN_NAME) {
        return invalid("use 1-64 characters: lowercase letters, digits, '-' and '_'");
    }
    if !name.as_bytes()[0].is_ascii_lowercase() {
        return invalid("start with a letter (it also names a Rust crate)");
    }
    if RESERVED.contains(&name.replace('-', "_").as_str()) {
        return invalid("that is a reserved word in Rust");
    }
    Ok(())
}

struct Vars {
    name: String,
    crate_name: String,
    type_name: String,
    code_prefix: String,
    sdk_path: String,
}

/// Placeholders that are the same for every project.
const FIXED: &[(&str, &str)] = &[
    ("{{wit_version}}", wit::VERSIONS[0].version),
    ("{{componentize_py}}", COMPONENTIZE_PY),
    ("{{componentize_js}}", COMPONENTIZE_JS),
    ("{{wit_bindgen}}", WIT_BINDGEN),
    ("{{wasm_component_ld}}", WASM_COMPONENT_LD),
    ("{{sdk_copy_dir}}", SDK_COPY_DIR),
];

impl Vars {
    fn new(name: &str, sdk: Option<&Path>) -> Self {
        let mut type_name: String = name
            .split(['-', '_'])
            .filter(|part| !part.is_empty())
            .map(|part| {
                let mut chars = part.chars();
                chars
                    .next()
                    .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect();
        if SDK_NAMES.contains(&type_name.as_str()) {
            type_name.push_str("Plugin");
        }
        // Reject codes are at most 64 bytes and `.blocked` is appended.
        let code_prefix: String = name.chars().take(56).collect();
        Self {
            name: name.to_string(),
            crate_name: name.replace('-', "_"),
            type_name,
            code_prefix,
            // A TOML basic string, escaped (backslashes in Windows paths, quotes).
            sdk_path: toml::Value::String(
                sdk.map_or_else(|| SDK_COPY_DIR.to_string(), |p| p.display().to_string()),
            )
            .to_string(),
        }
    }
}

fn render(template: &str, vars: &Vars) -> String {
    let template = FIXED
        .iter()
        .fold(template.to_string(), |text, (key, value)| {
            text.replace(key, value)
        });
    template
        .replace("{{name}}", &vars.name)
        .replace("{{crate_name}}", &vars.crate_name)
        .replace("{{type_name}}", &vars.type_name)
        .replace("{{code_prefix}}", &vars.code_prefix)
        .replace("{{sdk_path}}", &vars.sdk_path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use switchboard::config::LimitsConfig;
    use switchboard::plugins::Manifest;

    #[test]
    fn names_follow_the_manifest_rule_and_rust_crate_rules() {
        for good in ["shout", "dlp-2", "my_filter", "a"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Shout",
            "has space",
            "../x",
            "1st",
            "-x",
            "self",
            "test",
            &"a".repeat(65),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    fn checkout_sdk() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-api")
    }

    fn no_placeholder_left(dir: &Path) {
        for entry in walk(dir) {
            let text = std::fs::read_to_string(&entry).unwrap();
            assert!(
                !text.contains("{{"),
                "{}: every placeholder is filled",
                entry.display()
            );
        }
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }

    #[test]
    fn scaffolds_a_crate_with_a_valid_manifest_and_refuses_to_overwrite() {
        let sdk = checkout_sdk();
        let parent = tempfile::tempdir().unwrap();
        let made = scaffold("word-filter", parent.path(), Lang::Rust, Some(&sdk)).unwrap();
        assert_eq!(made.dir, parent.path().join("word-filter"));
        assert_eq!(
            made.component,
            "target/wasm32-wasip2/release/word_filter.wasm"
        );
        let lib = std::fs::read_to_string(made.dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("pub struct WordFilter"), "{lib}");
        no_placeholder_left(&made.dir);
        let cargo: toml::Table =
            toml::from_str(&std::fs::read_to_string(made.dir.join("Cargo.toml")).unwrap()).unwrap();
        assert!(cargo.contains_key("workspace"), "a standalone crate");
        let dep = &cargo["dependencies"]["switchboard-plugin-api"]["path"];
        assert!(
            Path::new(dep.as_str().unwrap())
                .join("Cargo.toml")
                .is_file(),
            "{dep}"
        );
        assert!(!made.dir.join(SDK_COPY_DIR).exists(), "no copy with --sdk");
        // The generated manifest is one the server accepts, naming the built component.
        let manifest =
            Manifest::load(&made.dir.join("plugin.toml"), &LimitsConfig::default()).unwrap();
        assert_eq!(manifest.name, "word-filter");
        assert_eq!(manifest.component, made.dir.join("word_filter.wasm"));

        let before = std::fs::read(made.dir.join("src/lib.rs")).unwrap();
        assert!(matches!(
            scaffold("word-filter", parent.path(), Lang::Rust, Some(&sdk)),
            Err(ScaffoldError::Exists(_))
        ));
        assert_eq!(std::fs::read(made.dir.join("src/lib.rs")).unwrap(), before);
        assert!(matches!(
            scaffold("other", parent.path(), Lang::Rust, Some(parent.path())),
            Err(ScaffoldError::NotAnSdk(_))
        ));
        assert!(matches!(
            scaffold("other", parent.path(), Lang::Python, Some(&sdk)),
            Err(ScaffoldError::SdkForOtherLanguage)
        ));
    }

    #[test]
    fn without_sdk_a_crate_carries_its_own_copy_of_the_sdk_by_a_relative_path() {
        let parent = tempfile::tempdir().unwrap();
        let made = scaffold("copy", parent.path(), Lang::Rust, None).unwrap();
        no_placeholder_left(&made.dir);
        let cargo: toml::Table =
            toml::from_str(&std::fs::read_to_string(made.dir.join("Cargo.toml")).unwrap()).unwrap();
        assert_eq!(
            cargo["dependencies"]["switchboard-plugin-api"]["path"].as_str(),
            Some(SDK_COPY_DIR)
        );
        let copy = made.dir.join(SDK_COPY_DIR);
        let sdk: toml::Table =
            toml::from_str(&std::fs::read_to_string(copy.join("Cargo.toml")).unwrap()).unwrap();
        assert_eq!(
            sdk["package"]["name"].as_str(),
            Some("switchboard-plugin-api")
        );
        assert!(sdk["package"]["version"].is_str(), "{sdk}");
        assert!(
            sdk["dependencies"]["wit-bindgen"]["version"].is_str(),
            "{sdk}"
        );
        assert_eq!(
            sdk["dependencies"]["switchboard-plugin-macros"]["path"].as_str(),
            Some("macros")
        );
        assert!(copy.join("macros/src/lib.rs").is_file());
        let lib = std::fs::read_to_string(copy.join("src/lib.rs")).unwrap();
        assert!(lib.contains(SDK_WIT_IN_COPY) && !lib.contains(SDK_WIT_IN_CHECKOUT));
        assert_eq!(
            std::fs::read_to_string(copy.join("wit/hooks.wit")).unwrap(),
            include_str!("../../../wit/hooks.wit")
        );
    }

    #[test]
    fn the_sdk_copy_lists_every_source_file_of_the_sdk() {
        let mut listed: Vec<&str> = SDK_SOURCES.iter().map(|(file, _)| *file).collect();
        let sdk = checkout_sdk();
        let mut present: Vec<String> = ["src", "macros/src"]
            .iter()
            .flat_map(|dir| {
                std::fs::read_dir(sdk.join(dir))
                    .unwrap()
                    .map(move |e| format!("{dir}/{}", e.unwrap().file_name().to_string_lossy()))
            })
            .chain(["macros/Cargo.toml".to_string()])
            .collect();
        listed.sort_unstable();
        present.sort_unstable();
        assert_eq!(listed, present);
    }

    #[test]
    fn python_js_and_c_projects_carry_the_interface_and_a_loadable_manifest() {
        let parent = tempfile::tempdir().unwrap();
        for (lang, entry) in [
            (Lang::Python, "app.py"),
            (Lang::Js, "app.js"),
            (Lang::C, "app.c"),
        ] {
            let name = format!("{lang:?}-filter").to_lowercase();
            let made = scaffold(&name, parent.path(), lang, None).unwrap();
            no_placeholder_left(&made.dir);
            assert!(made.dir.join(entry).is_file());
            assert_eq!(made.component, format!("{name}.wasm"));
            for (file, text) in wit::VERSIONS[0].files {
                assert_eq!(
                    std::fs::read_to_string(made.dir.join("wit").join(file)).unwrap(),
                    text
                );
            }
            let manifest =
                Manifest::load(&made.dir.join("plugin.toml"), &LimitsConfig::default()).unwrap();
            assert_eq!(manifest.name, name);
            assert_eq!(manifest.component, made.dir.join(&made.component));
        }
        let package: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(parent.path().join("js-filter/package.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            package["devDependencies"]["@bytecodealliance/componentize-js"],
            COMPONENTIZE_JS
        );
    }

    #[test]
    fn type_names_never_shadow_the_sdk() {
        assert_eq!(Vars::new("plugin", None).type_name, "PluginPlugin");
        assert_eq!(Vars::new("my_dlp-2", None).type_name, "MyDlp2");
        assert_eq!(Vars::new(&"a".repeat(64), None).code_prefix.len(), 56);
    }
}
