//! The contract between the `pipe` orchestrator and the stage kinds it runs.
//!
//! A stage kind is a pure-ish function from (parameters, upstream artifacts, external inputs)
//! to an artifact directory. The orchestrator owns hashing, caching, locking and atomic
//! publication; a kind only validates its parameters, names its external inputs, and writes
//! its outputs into [`StageContext::out_dir`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub mod html;
pub use html::escape as html_escape;

/// Any error a stage run returns. Each kind has its own typed error (thiserror) and boxes it
/// here, so the orchestrator can print the whole `source()` chain once.
pub type StageError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Which compute backend the pipeline asked for (`[pipeline] backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// CUDA when this build has it and a device is present, then a wgpu adapter that is a real
    /// GPU, the CPU otherwise.
    #[default]
    Auto,
    Cpu,
    Cuda,
    /// Burn's wgpu backend (Vulkan, Metal): the best adapter present, software ones included.
    Wgpu,
}

/// Everything a stage run may look at. Paths are absolute.
pub struct StageContext<'a> {
    /// The stage's name in pipeline.toml (`[stages.<name>]`).
    pub stage: &'a str,
    /// Directory of pipeline.toml: relative paths in parameters resolve against it.
    pub pipeline_dir: &'a Path,
    /// An empty directory on the cache's filesystem. Everything written here becomes the
    /// artifact once the run succeeds; it is discarded if the run fails.
    pub out_dir: &'a Path,
    /// A directory that survives failed and killed runs of the same stage key (not
    /// successful ones): the place for resumable checkpoints.
    pub work_dir: &'a Path,
    /// Upstream stage name → its kind and artifact directory (read-only).
    pub deps: &'a Deps,
    /// The stage's own parameters: its table from pipeline.toml without `kind` and `deps`.
    pub params: &'a toml::Table,
    /// `[pipeline] seed`.
    pub seed: u64,
    /// `[pipeline] backend`.
    pub backend: BackendChoice,
    /// Which of the backend's devices to run on: the device pool (`[pipeline] devices`) hands
    /// each accelerator stage as many free ones as [`StageKind::devices`] asks for. Empty: the
    /// backend's first (the CPU's only). Never part of a key.
    pub devices: &'a [usize],
    /// Where long work reports how far it got (a progress bar in a terminal).
    pub progress: &'a dyn Progress,
}

impl StageContext<'_> {
    /// The first device given (`None`: the backend's first), for a stage that uses one.
    pub fn device(&self) -> Option<usize> {
        self.devices.first().copied()
    }
}

/// How many devices a stage asks the device pool for: a number, or `"all"` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceCount {
    Count(usize),
    All,
}

impl Default for DeviceCount {
    fn default() -> Self {
        Self::Count(1)
    }
}

impl DeviceCount {
    /// How many peers run for `given` devices from the pool (empty: the CPU, where every peer
    /// shares the one device): `Count(n)` is n, `All` is as many as were given (1 on the CPU).
    pub fn peers(self, given: usize) -> usize {
        match self {
            Self::Count(n) => n,
            Self::All => given.max(1),
        }
    }
}

impl serde::Serialize for DeviceCount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Count(n) => s.serialize_u64(*n as u64),
            Self::All => s.serialize_str("all"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for DeviceCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(i64),
            Word(String),
        }
        const EXPECTED: &str = "expected a number of devices (1, 2, …) or \"all\"";
        match Raw::deserialize(d).map_err(|_| serde::de::Error::custom(EXPECTED))? {
            Raw::Count(n) => usize::try_from(n)
                .map(Self::Count)
                .map_err(|_| serde::de::Error::custom(format!("{EXPECTED}, got {n}"))),
            Raw::Word(w) if w == "all" => Ok(Self::All),
            Raw::Word(w) => Err(serde::de::Error::custom(format!("{EXPECTED}, got {w:?}"))),
        }
    }
}

/// An upstream stage as a run sees it: what it is and where its artifact is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    /// Its kind (`kind = "..."` in pipeline.toml), which says what the artifact holds.
    pub kind: String,
    /// Its artifact directory (read-only).
    pub dir: PathBuf,
}

impl Dep {
    pub fn new(kind: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        Self {
            kind: kind.into(),
            dir: dir.into(),
        }
    }
}

/// A stage's deps: upstream stage name → [`Dep`].
pub type Deps = BTreeMap<String, Dep>;

/// What a size estimate knows of an upstream stage: its kind, and how many images its
/// artifact holds (counted where it exists, else that stage's own estimate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub kind: String,
    pub images: Option<u64>,
}

/// A stage's artifact size, estimated before it runs ([`StageKind::estimate`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SizeEstimate {
    pub bytes: u64,
    /// How many images the artifact will hold, for the stages after it.
    pub images: Option<u64>,
    /// How the figure was made, for people: `8091 images x 442368 B`.
    pub basis: String,
}

impl SizeEstimate {
    /// `images` × `per_image` bytes (saturating), with its basis.
    pub fn per_image(images: u64, per_image: u64, what: &str) -> Self {
        SizeEstimate {
            bytes: images.saturating_mul(per_image),
            images: Some(images),
            basis: format!("{images} images x {per_image} B ({what})"),
        }
    }
}

/// The images an upstream stage of one of `kinds` holds, when some dep says.
pub fn upstream_images(deps: &BTreeMap<String, Upstream>, kinds: &[&str]) -> Option<u64> {
    deps.values()
        .filter(|d| kinds.contains(&d.kind.as_str()))
        .find_map(|d| d.images)
}

/// The kind whose artifact is whatever its command wrote: a dep of this kind is accepted by
/// [`pick_dep`] for any role when it is named explicitly.
pub const COMMAND_KIND: &str = "command";

/// Progress of a long stage: phases with an optional number of steps. Shared across threads.
pub trait Progress: Sync {
    /// Start a phase, e.g. `begin("validating images", Some(8091))`; `None` when the number of
    /// steps is unknown.
    fn begin(&self, phase: &str, total: Option<u64>);
    /// Start a phase that counts `total` things called `unit` ("images", "steps"), so the
    /// display can say how many per second and when it ends.
    fn begin_items(&self, phase: &str, total: u64, _unit: &str) {
        self.begin(phase, Some(total));
    }
    /// `n` more steps of the current phase are done.
    fn advance(&self, n: u64);
    /// Where the current phase stands, in a few words shown beside it and replaced by the next
    /// call, e.g. `loss 0.5312 · val 0.5401 · best 0.5350 @ep19 · patience 1/3`.
    fn status(&self, _text: &str) {}
    /// A line worth keeping (an epoch's summary): printed for the user, not replaced.
    fn note(&self, _line: &str) {}
}

/// Reports nothing (tests, library use).
pub struct Silent;

impl Progress for Silent {
    fn begin(&self, _phase: &str, _total: Option<u64>) {}
    fn advance(&self, _n: u64) {}
}

/// What a successful run reports besides the files it wrote.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Headline numbers (losses, scores, counts) shown by `pipe show` and stored in the manifest.
    pub metrics: serde_json::Map<String, serde_json::Value>,
    /// Files or directories, relative to `out_dir`, that a person wants to look at; they are
    /// mirrored into `results/<stage>/`. Empty means "everything at the top level".
    pub results: Vec<PathBuf>,
}

/// A parameter problem, located by its key path inside the stage's table so the orchestrator
/// can point at file:line:col.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    /// Keys from the stage's table down to the offending value, e.g. `["optimizer", "lr"]`.
    /// Empty when the problem concerns the table as a whole.
    pub path: Vec<String>,
    pub message: String,
}

impl ParamError {
    pub fn new(
        path: impl IntoIterator<Item = impl Into<String>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            path: path.into_iter().map(Into::into).collect(),
            message: message.into(),
        }
    }
}

/// One kind of stage (`kind = "..."` in pipeline.toml).
pub trait StageKind: Send + Sync {
    /// The name used in `kind = "..."`.
    fn name(&self) -> &'static str;

    /// Bump whenever the kind's output for the same inputs changes (a bug fix, a new file):
    /// it is part of every cache key of this kind.
    fn version(&self) -> u32;

    /// One line for `--help` style listings.
    fn about(&self) -> &'static str;

    /// The kind's keys with their defaults and types as TOML lines, for `pipe kinds KIND`
    /// (see [`params_template`]); `None` when the kind does not say.
    fn template(&self) -> Option<String> {
        None
    }

    /// The metrics worth a line at the end of a run (`pipe run` prints those the artifact
    /// has, and the stage's page); none by default.
    fn headline(&self) -> &'static [&'static str] {
        &[]
    }

    /// Validate the parameters once, when pipeline.toml is loaded.
    fn check(&self, params: &toml::Table) -> Result<(), ParamError>;

    /// Files and directories outside the cache whose content the output depends on, resolved
    /// against `pipeline_dir`. They are content-hashed into the cache key; missing ones are
    /// reported by the orchestrator.
    fn inputs(&self, params: &toml::Table, pipeline_dir: &Path)
    -> Result<Vec<PathBuf>, ParamError>;

    /// Make remote inputs local before planning, e.g. download a Hub model, so that
    /// [`StageKind::inputs`] can name its files. `pipe run` calls it for the stages it may
    /// execute; a failure is reported by the stage when it runs. Default: nothing to fetch.
    fn fetch(&self, _params: &toml::Table, _pipeline_dir: &Path) -> Result<(), StageError> {
        Ok(())
    }

    /// Whether the stage competes for the accelerator (such stages run one at a time).
    fn uses_accelerator(&self) -> bool {
        false
    }

    /// How many of the device pool's devices a run of an accelerator stage takes (all at once,
    /// so two stages never each hold part of what both wait for). Default: one.
    fn devices(&self, _params: &toml::Table) -> DeviceCount {
        DeviceCount::default()
    }

    /// The artifact's size before the stage runs, from its parameters and its upstream
    /// stages (`pipe run --dry-run`, `pipe status`, and the free-space check before a run);
    /// `None` when the kind cannot say or writes little.
    fn estimate(
        &self,
        _params: &toml::Table,
        _pipeline_dir: &Path,
        _deps: &BTreeMap<String, Upstream>,
    ) -> Option<SizeEstimate> {
        None
    }

    /// Produce the artifact in `ctx.out_dir`.
    fn run(&self, ctx: &StageContext<'_>) -> Result<Outcome, StageError>;
}

/// The names of `deps`, comma-separated, or `none`.
pub fn dep_names(deps: &Deps) -> String {
    if deps.is_empty() {
        "none".to_string()
    } else {
        deps.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// The dep that plays one role for a stage (`key`, e.g. `collate`): the one named by
/// `key = NAME` (`named`), else the only dep whose kind is one of `kinds`; `None` when no dep
/// is of those kinds. A named dep must be of one of `kinds`, or a [`COMMAND_KIND`] stage (the
/// user vouches for what its command wrote).
pub fn pick_dep<'d>(
    deps: &'d Deps,
    key: &str,
    named: Option<&str>,
    kinds: &[&str],
) -> Result<Option<(&'d str, &'d Path)>, ParamError> {
    let wanted = || {
        kinds
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    if let Some(name) = named {
        let (name, dep) = deps.get_key_value(name).ok_or_else(|| {
            ParamError::new(
                [key],
                format!(
                    "`{name}` is not among this stage's deps ({})",
                    dep_names(deps)
                ),
            )
        })?;
        if !kinds.contains(&dep.kind.as_str()) && dep.kind != COMMAND_KIND {
            return Err(ParamError::new(
                [key],
                format!(
                    "dep `{name}` is a `{}` stage; `{key}` names a {} stage",
                    dep.kind,
                    wanted()
                ),
            ));
        }
        return Ok(Some((name.as_str(), dep.dir.as_path())));
    }
    let found: Vec<(&str, &Path)> = deps
        .iter()
        .filter(|(_, d)| kinds.contains(&d.kind.as_str()))
        .map(|(n, d)| (n.as_str(), d.dir.as_path()))
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        many => Err(ParamError::new(
            [key],
            format!(
                "several deps are {} stages ({}); pick one with `{key} = NAME`",
                wanted(),
                many.iter().map(|d| d.0).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// A name as an environment variable suffix: `my-stage` → `MY_STAGE` (`$PIPE_DEP_MY_STAGE`,
/// `$PIPE_PARAM_…`).
/// A path as stage outputs show it: relative to the pipeline's directory when below it, so no
/// artifact depends on where the project lives.
pub fn project_relative(path: &Path, pipeline_dir: &Path) -> String {
    path.strip_prefix(pipeline_dir)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

pub fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Deserialize a stage's parameter table into its typed form (use `#[serde(deny_unknown_fields)]`),
/// turning serde's error into a [`ParamError`] with the key path where it can be recovered.
pub fn parse_params<T: DeserializeOwned>(params: &toml::Table) -> Result<T, ParamError> {
    let value = toml::Value::Table(params.clone());
    serde_path_to_error::deserialize(value).map_err(|e| {
        // The keys down to the value serde choked on (not into arrays: a location is a key).
        let mut path: Vec<String> = Vec::new();
        for segment in e.path().iter() {
            match segment {
                serde_path_to_error::Segment::Map { key } => path.push(key.clone()),
                _ => break,
            }
        }
        let message = e.into_inner().to_string();
        // An unknown field is reported at its table; name the key itself.
        if let Some(field) = unknown_field(&message)
            && path.last() != Some(&field)
        {
            path.push(field);
        }
        ParamError {
            path,
            message: tidy(&message),
        }
    })
}

/// [`parse_params`] for a table whose keys belong to two structs: the keys `S` declares (e.g.
/// the decoding options several kinds share) go to `S`, the others to `T`; both use
/// `#[serde(deny_unknown_fields)]`. (`#[serde(flatten)]` would lose `deny_unknown_fields`.)
///
/// A key neither knows is reported as one table's unknown field, located at the key, with
/// every key of both in the "expected one of" list.
pub fn parse_params_split<T: DeserializeOwned, S: DeserializeOwned>(
    params: &toml::Table,
) -> Result<(T, S), ParamError> {
    let shared = struct_fields::<S>();
    // `S`'s keys go to `S`, every other key (unknown ones included) to `T`.
    let (mut for_s, mut for_t) = (toml::Table::new(), toml::Table::new());
    for (k, v) in params {
        let part = if shared.contains(&k.as_str()) {
            &mut for_s
        } else {
            &mut for_t
        };
        part.insert(k.clone(), v.clone());
    }
    let t = parse_params::<T>(&for_t).map_err(|mut e| {
        if let [key] = e.path.as_slice()
            && e.message.starts_with("unknown field")
        {
            let expected: Vec<String> = struct_fields::<T>()
                .iter()
                .chain(shared)
                .map(|f| format!("`{f}`"))
                .collect();
            e.message = format!(
                "unknown field `{key}`, expected one of {}",
                expected.join(", ")
            );
        }
        e
    })?;
    Ok((t, parse_params::<S>(&for_s)?))
}

/// `T`'s keys as paste-able TOML lines for `pipe kinds KIND`: each key with its default and
/// its type (`lr = 0.0001  # a number`), in the struct's order; a key without a default is
/// commented out (`# max_steps =  # optional, no default`). `required` gives the keys that
/// must be set a placeholder value (`model = "MODEL"`).
pub fn params_template<T: DeserializeOwned + serde::Serialize>(
    required: &toml::Table,
) -> Result<String, ParamError> {
    let parsed: T = parse_params(required)?;
    let defaults = toml::Table::try_from(&parsed)
        .map_err(|e| ParamError::new(Vec::<String>::new(), e.to_string()))?;
    let width = struct_fields::<T>()
        .iter()
        .map(|k| k.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for key in struct_fields::<T>() {
        let line = match defaults.get(*key) {
            Some(value) => format!("{key:width$} = {value}  # {}", type_words(value)),
            None => format!("# {key:width$} =  # optional, no default"),
        };
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// `x` to `digits` significant digits, as people read numbers beside a progress bar or a
/// run's last lines: `0.5312`, `12.35`, `1235` (4 digits); below 1e-4 in exponent form
/// (`2.350e-9`) rather than a row of zeros; not finite as Rust writes it.
pub fn significant(x: f64, digits: u32) -> String {
    if !x.is_finite() || x == 0.0 {
        return format!("{x}");
    }
    let digits = digits.max(1) as i32;
    if x.abs() < 1e-4 {
        let decimals = (digits - 1) as usize;
        return format!("{x:.decimals$e}");
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).max(0) as usize;
    format!("{x:.decimals$}")
}

/// What a TOML value is, in words.
fn type_words(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "text",
        toml::Value::Integer(_) => "a whole number",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "true or false",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "a list",
        toml::Value::Table(_) => "a table",
    }
}

/// The field names a `#[derive(Deserialize)]` struct accepts (its serde `FIELDS`).
fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    use std::cell::Cell;

    use serde::de::{Deserializer, Visitor};

    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("probe")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    /// A deserializer that only records the fields it is asked for.
    struct Probe<'a>(&'a Cell<&'static [&'static str]>);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0.set(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let fields = Cell::new(&[][..]);
    let _ = T::deserialize(Probe(&fields));
    fields.get()
}

/// serde reports an unknown field as "unknown field `x`, expected one of ..." without a path;
/// recover `x` so the orchestrator can locate it.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.split("unknown field `").nth(1)?;
    Some(rest.split('`').next()?.to_string())
}

/// serde's message as a person reads it: without the `in `key`` line the location already
/// says, and with Rust's type names in words ("expected a whole number", not "usize").
fn tidy(message: &str) -> String {
    let mut text = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("in `"))
        .collect::<Vec<_>>()
        .join(" ");
    const WORDS: &[(&str, &str)] = &[
        ("usize", "a whole number, 0 or more"),
        ("u64", "a whole number, 0 or more"),
        ("u32", "a whole number, 0 or more"),
        ("u16", "a whole number from 0 to 65535"),
        ("u8", "a whole number from 0 to 255"),
        ("i64", "a whole number"),
        ("i32", "a whole number"),
        ("f64", "a number"),
        ("f32", "a number"),
    ];
    for (rust, words) in WORDS {
        let from = format!("expected {rust}");
        let ends_word = |rest: &str| !rest.starts_with(|c: char| c.is_ascii_alphanumeric());
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(at) = rest.find(&from) {
            let after = &rest[at + from.len()..];
            out.push_str(&rest[..at]);
            if ends_word(after) {
                out.push_str("expected ");
                out.push_str(words);
            } else {
                out.push_str(&from);
            }
            rest = after;
        }
        out.push_str(rest);
        text = out;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Recipe {
        model: String,
        #[serde(default = "three")]
        epochs: usize,
        #[serde(default)]
        max_steps: Option<usize>,
        #[serde(default)]
        targets: Vec<String>,
    }

    fn three() -> usize {
        3
    }

    #[test]
    fn a_template_lists_every_key_with_its_default_and_parses_back_to_the_defaults() {
        let required: toml::Table = toml::from_str("model = 'M'").expect("toml");
        let text = params_template::<Recipe>(&required).expect("template");
        assert_eq!(
            text,
            "model     = \"M\"  # text\n\
             epochs    = 3  # a whole number\n\
             # max_steps =  # optional, no default\n\
             targets   = []  # a list\n"
        );
        let back: toml::Table = toml::from_str(&text).expect("the template is TOML");
        assert_eq!(
            parse_params::<Recipe>(&back).expect("parses"),
            parse_params::<Recipe>(&required).expect("defaults")
        );
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct P {
        lr: f64,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Counts {
        epochs: usize,
        lr: f64,
    }

    #[test]
    fn type_errors_say_what_is_expected_in_words() {
        let t: toml::Table = toml::from_str("epochs = \"ten\"\nlr = 1.0").expect("toml");
        let e = parse_params::<Counts>(&t).expect_err("a string for a count");
        assert_eq!(e.path, ["epochs"]);
        assert_eq!(
            e.message,
            "invalid type: string \"ten\", expected a whole number, 0 or more"
        );
        let t: toml::Table = toml::from_str("epochs = -3\nlr = 1.0").expect("toml");
        let e = parse_params::<Counts>(&t).expect_err("negative");
        assert!(
            e.message.ends_with("expected a whole number, 0 or more"),
            "{}",
            e.message
        );
        let t: toml::Table = toml::from_str("epochs = 3\nlr = \"fast\"").expect("toml");
        let e = parse_params::<Counts>(&t).expect_err("a string for a rate");
        assert!(e.message.ends_with("expected a number"), "{}", e.message);
        assert_eq!(
            tidy("expected u8s, expected u8"),
            "expected u8s, expected a whole number from 0 to 255"
        );
    }

    #[test]
    fn unknown_field_is_located() {
        let t: toml::Table = toml::from_str("lrr = 1.0").expect("valid toml");
        let e = parse_params::<P>(&t).expect_err("unknown field");
        assert_eq!(e.path, vec!["lrr".to_string()]);
        assert!(e.message.contains("unknown field"), "{}", e.message);
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        epochs: usize,
        #[serde(default)]
        inner: Option<P>,
    }

    #[test]
    fn type_errors_are_located_at_their_key() {
        let t: toml::Table = toml::from_str("epochs = \"two\"").expect("valid toml");
        let e = parse_params::<Outer>(&t).expect_err("wrong type");
        assert_eq!(e.path, vec!["epochs".to_string()], "{}", e.message);
        assert!(e.message.contains("invalid type"), "{}", e.message);

        let t: toml::Table = toml::from_str("epochs = 1\n[inner]\nlr = true").expect("toml");
        let e = parse_params::<Outer>(&t).expect_err("wrong type");
        assert_eq!(e.path, ["inner", "lr"], "{}", e.message);

        let t: toml::Table = toml::from_str("epochs = 1\n[inner]\nlrr = 1.0").expect("toml");
        let e = parse_params::<Outer>(&t).expect_err("unknown");
        assert_eq!(e.path, ["inner", "lrr"], "{}", e.message);
    }

    fn deps() -> Deps {
        Deps::from([
            ("c".to_string(), Dep::new("collate", "/a/c")),
            ("p".to_string(), Dep::new("prep", "/a/p")),
            ("x".to_string(), Dep::new(COMMAND_KIND, "/a/x")),
        ])
    }

    #[test]
    fn pick_dep_by_kind_and_by_name() {
        let d = deps();
        let c = pick_dep(&d, "collate", None, &["collate"]).expect("one collate");
        assert_eq!(c, Some(("c", Path::new("/a/c"))));
        assert_eq!(pick_dep(&d, "train", None, &["train"]).expect("none"), None);
        // A command stage is never picked by kind, but may be named for any role.
        let x = pick_dep(&d, "collate", Some("x"), &["collate"]).expect("named");
        assert_eq!(x, Some(("x", Path::new("/a/x"))));
    }

    #[test]
    fn pick_dep_errors_name_the_key() {
        let d = deps();
        let e = pick_dep(&d, "collate", Some("p"), &["collate"]).expect_err("wrong kind");
        assert_eq!(e.path, vec!["collate".to_string()]);
        assert!(e.message.contains("is a `prep` stage"), "{}", e.message);
        let e = pick_dep(&d, "collate", Some("zz"), &["collate"]).expect_err("absent");
        assert!(
            e.message.contains("not among this stage's deps (c, p, x)"),
            "{}",
            e.message
        );
        let mut two = deps();
        two.insert("c2".to_string(), Dep::new("collate", "/a/c2"));
        let e = pick_dep(&two, "collate", None, &["collate"]).expect_err("ambiguous");
        assert!(
            e.message
                .contains("(c, c2); pick one with `collate = NAME`"),
            "{}",
            e.message
        );
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Shared {
        beams: usize,
        tokens: usize,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Own {
        lr: f64,
        #[serde(skip)]
        shared: Shared,
    }

    #[test]
    fn split_tables_go_to_their_structs() {
        let t: toml::Table = toml::from_str("lr = 0.5\nbeams = 3").expect("valid toml");
        let (own, shared) = parse_params_split::<Own, Shared>(&t).expect("parses");
        assert_eq!((own.lr, shared.beams, shared.tokens), (0.5, 3, 0));
        assert_eq!(own.shared.beams, 0, "skipped: the caller fills it");
    }

    #[test]
    fn split_unknown_field_is_located_and_lists_every_key() {
        let t: toml::Table = toml::from_str("lr = 0.5\nbeam = 3").expect("valid toml");
        let e = parse_params_split::<Own, Shared>(&t).expect_err("unknown field");
        assert_eq!(e.path, vec!["beam".to_string()]);
        assert_eq!(
            e.message,
            "unknown field `beam`, expected one of `lr`, `beams`, `tokens`"
        );
        let t: toml::Table = toml::from_str("beams = 3").expect("valid toml");
        let e = parse_params_split::<Own, Shared>(&t).expect_err("missing lr");
        assert!(e.message.contains("missing field `lr`"), "{}", e.message);
        let t: toml::Table = toml::from_str("lr = 1.0\nbeams = \"x\"").expect("valid toml");
        assert!(parse_params_split::<Own, Shared>(&t).is_err());
    }

    #[test]
    fn good_params_parse() {
        let t: toml::Table = toml::from_str("lr = 0.5").expect("valid toml");
        assert_eq!(parse_params::<P>(&t).expect("parses").lr, 0.5);
    }
}
