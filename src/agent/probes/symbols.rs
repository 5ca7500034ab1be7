//! The functions of an ELF binary or shared library, by demangled name, with the
//! file offsets uprobes attach at.
//!
//! `crate::runtime::elf` tells which toolchain built a file; this reads its
//! symbol tables (`.symtab`, and `.dynsym` for what a stripped file still exports).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

use super::ProbeError;
use super::go::GoBinary;
use crate::runtime::elf::{self, Toolchain};

/// A function that can be probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// Demangled, without Rust's hash suffix or C++ parameter lists: the span name.
    pub name: String,
    /// The symbol as stored.
    pub symbol: String,
    /// Where its first instruction is in the file.
    pub offset: u64,
    /// Bytes of machine code, as the symbol table says (0 when it does not).
    pub size: u64,
}

#[derive(Debug)]
pub struct Binary {
    pub path: PathBuf,
    /// By file offset: aliases of one function are listed once.
    pub functions: Vec<Function>,
    /// No `.symtab`: only exported functions are known.
    pub stripped: bool,
    /// Built by Go: its version and inlined functions.
    pub go: Option<GoBinary>,
}

impl Binary {
    pub fn read(path: &Path) -> Result<Binary, ProbeError> {
        let read_error = |source| ProbeError::Read {
            target: path.to_path_buf(),
            source,
        };
        let data = std::fs::read(path).map_err(read_error)?;
        let file = object::File::parse(&*data).map_err(|_| ProbeError::NotElf {
            target: path.to_path_buf(),
        })?;
        let stripped = file.symbol_table().is_none();
        let mut by_offset: BTreeMap<u64, Function> = BTreeMap::new();
        for symbol in file.symbols().chain(file.dynamic_symbols()) {
            if symbol.kind() != SymbolKind::Text || !symbol.is_definition() || symbol.address() == 0
            {
                continue;
            }
            let Ok(raw) = symbol.name() else { continue };
            let Some(offset) = symbol
                .section_index()
                .and_then(|i| file.section_by_index(i).ok())
                .and_then(|s| Some((s.address(), s.file_range()?.0)))
                .and_then(|(address, file_offset)| {
                    symbol
                        .address()
                        .checked_sub(address)?
                        .checked_add(file_offset)
                })
            else {
                continue;
            };
            // The first name seen wins: `.symtab` before `.dynsym`.
            by_offset.entry(offset).or_insert_with(|| Function {
                name: demangle(raw),
                symbol: raw.to_string(),
                offset,
                size: symbol.size(),
            });
        }
        Ok(Binary {
            path: path.to_path_buf(),
            functions: by_offset.into_values().collect(),
            stripped,
            go: (elf::toolchain(path) == Some(Toolchain::Go)).then(|| GoBinary::read(&file)),
        })
    }

    /// Go functions inlined everywhere: they have DWARF but no symbol.
    pub fn inlined_only(&self) -> impl Iterator<Item = &str> + '_ {
        let inlined = self.go.as_ref().and_then(|g| g.inlined.as_ref());
        let with_code: std::collections::HashSet<&str> = match inlined {
            Some(_) => self.functions.iter().map(|f| f.name.as_str()).collect(),
            None => Default::default(),
        };
        inlined
            .into_iter()
            .flatten()
            .map(String::as_str)
            .filter(move |name| !with_code.contains(name))
    }

    /// A Go function that has code of its own and is also inlined somewhere.
    pub fn also_inlined(&self, name: &str) -> bool {
        self.go
            .as_ref()
            .and_then(|g| g.inlined.as_ref())
            .is_some_and(|set| set.contains(name))
    }

    /// The machine code of `function`, read from the file.
    pub fn code(&self, function: &Function) -> Result<Vec<u8>, ProbeError> {
        use std::io::{Read, Seek, SeekFrom};
        let read_error = |source| ProbeError::Read {
            target: self.path.clone(),
            source,
        };
        let mut file = std::fs::File::open(&self.path).map_err(read_error)?;
        file.seek(SeekFrom::Start(function.offset))
            .map_err(read_error)?;
        let mut code = Vec::new();
        file.take(function.size)
            .read_to_end(&mut code)
            .map_err(read_error)?;
        Ok(code)
    }

    /// The functions whose demangled name (or raw symbol) matches `pattern`.
    pub fn matching<'a>(&'a self, pattern: &'a str) -> impl Iterator<Item = &'a Function> + 'a {
        self.functions.iter().filter(move |f| {
            super::pattern::matches(pattern, &f.name) || super::pattern::matches(pattern, &f.symbol)
        })
    }
}

/// A symbol's readable name: Rust (legacy and v0) without the hash, C++ without
/// parameters, anything else as is.
pub fn demangle(raw: &str) -> String {
    if let Ok(rust) = rustc_demangle::try_demangle(raw) {
        return format!("{rust:#}");
    }
    if raw.starts_with("_Z") {
        let options = cpp_demangle::DemangleOptions::new().no_params();
        if let Ok(name) = cpp_demangle::Symbol::new(raw).map(|s| s.demangle_with_options(&options))
            && let Ok(name) = name
        {
            return name;
        }
    }
    raw.to_string()
}

/// The file a `--uprobe` TARGET names: empty for the command itself, a path when
/// it has a slash, else a program on PATH or a shared library the dynamic linker
/// knows (`libc.so.6`, `libssl`, `ssl`).
pub fn resolve_target(
    target: &str,
    program: Option<&Path>,
    cwd: &Path,
) -> Result<PathBuf, ProbeError> {
    if target.is_empty() {
        return program.map(Path::to_path_buf).ok_or(ProbeError::NoTarget);
    }
    if target.contains('/') {
        let path = cwd.join(target);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(ProbeError::TargetNotFound {
                target: target.to_string(),
            })
        };
    }
    if let Some(program) = program
        && program.file_name().is_some_and(|n| n == target)
    {
        return Ok(program.to_path_buf());
    }
    if let Ok(path) = which::which_in(target, std::env::var_os("PATH"), cwd) {
        return Ok(path);
    }
    library(target).ok_or_else(|| ProbeError::TargetNotFound {
        target: target.to_string(),
    })
}

/// A shared library from the dynamic linker's cache (`ldconfig -p`).
fn library(name: &str) -> Option<PathBuf> {
    let output = std::process::Command::new("ldconfig")
        .arg("-p")
        .output()
        .or_else(|_| {
            std::process::Command::new("/sbin/ldconfig")
                .arg("-p")
                .output()
        })
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let stem = name.strip_prefix("lib").unwrap_or(name);
    let wanted = [name.to_string(), format!("lib{stem}.so")];
    let arch = if cfg!(target_arch = "x86_64") {
        "x86-64"
    } else {
        ""
    };
    let mut candidates = text.lines().filter_map(|line| {
        let (left, path) = line.trim().split_once(" => ")?;
        let soname = left.split_whitespace().next()?;
        let matches = wanted
            .iter()
            .any(|w| soname == w || soname.starts_with(&format!("{w}.")));
        matches.then(|| (left.contains(arch), PathBuf::from(path)))
    });
    let all: Vec<_> = candidates.by_ref().collect();
    all.iter()
        .find(|(native, _)| *native)
        .or(all.first())
        .map(|(_, p)| p.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demangles_rust_and_cpp_without_hashes_or_parameters() {
        assert_eq!(
            demangle("_ZN4core3fmt5write17h1234567890abcdefE"),
            "core::fmt::write"
        );
        assert_eq!(demangle("_RNvCs1234_5hello4main"), "hello::main");
        assert_eq!(demangle("_ZN3foo3barEi"), "foo::bar");
        assert_eq!(demangle("work"), "work");
    }

    #[test]
    fn reads_the_test_binarys_own_functions() {
        let me = std::env::current_exe().unwrap();
        let binary = Binary::read(&me).unwrap();
        assert!(!binary.stripped);
        let found: Vec<_> = binary
            .matching("otel_run::agent::probes::symbols::demangle")
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].offset > 0);
    }

    #[test]
    fn resolves_libraries_by_name() {
        let libc = resolve_target("libc.so.6", None, Path::new("/")).unwrap();
        assert!(libc.is_file(), "{}", libc.display());
        assert_eq!(
            resolve_target("", Some(Path::new("/bin/sh")), Path::new("/")).unwrap(),
            Path::new("/bin/sh")
        );
        assert!(matches!(
            resolve_target("no-such-thing-xyz", None, Path::new("/")),
            Err(ProbeError::TargetNotFound { .. })
        ));
    }
}
