//! What probing a Go program needs to know of its file: which Go built it
//! (the probes read the running goroutine from Go's register ABI), where each
//! function returns (a uretprobe would crash it, so each `ret` gets a uprobe),
//! and which functions the compiler inlined (those calls have no code of
//! their own to probe).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io::Read;

use object::{Object, ObjectSection};

/// The Go-specific facts of one binary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoBinary {
    /// `go1.26.0`; `None` when the build information is in the pre-1.18 form.
    pub version: Option<String>,
    /// Functions inlined at one call site or more, by Go name; `None` when the
    /// binary has no DWARF (built with `-ldflags=-w`), so it cannot be told.
    pub inlined: Option<BTreeSet<String>>,
}

impl GoBinary {
    /// Reads a file `runtime::elf` found was built by Go.
    pub fn read(file: &object::File) -> GoBinary {
        let version = file
            .section_by_name(".go.buildinfo")
            .and_then(|s| s.data().ok())
            .and_then(build_version);
        GoBinary {
            version,
            inlined: inlined(file),
        }
    }

    /// Why the probes cannot follow this program's goroutines, if they cannot.
    pub fn unsupported(&self) -> Option<String> {
        if !cfg!(target_arch = "x86_64") {
            return Some("Go functions can be probed on x86-64 only".into());
        }
        match self.version.as_deref().and_then(minor) {
            Some(minor) if minor >= 18 => None,
            _ => Some(format!(
                "it was built with {}; Go functions can be probed in programs built with Go 1.18 or newer",
                self.version.as_deref().unwrap_or("a Go older than 1.18")
            )),
        }
    }
}

/// The minor version of `go1.26.0` (26); `None` for a development build.
fn minor(version: &str) -> Option<u32> {
    let rest = version.strip_prefix("go1.")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The Go version in a `.go.buildinfo` section. Since Go 1.18 it is stored
/// inline (flag bit 2) after the 32-byte header, as a varint length and bytes.
fn build_version(data: &[u8]) -> Option<String> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    if !data.starts_with(MAGIC) || data.get(15)? & 2 == 0 {
        return None;
    }
    let mut rest = data.get(32..)?;
    let (mut length, mut shift) = (0usize, 0);
    loop {
        let (&byte, tail) = rest.split_first()?;
        rest = tail;
        length |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
    let version = std::str::from_utf8(rest.get(..length)?).ok()?;
    version.starts_with("go").then(|| version.to_string())
}

/// Offsets, relative to the function's start, of each `ret` instruction of the
/// x86-64 machine code `code`. Decoded instruction by instruction: a 0xC3 byte
/// inside another instruction (an immediate, a displacement) is not a `ret`.
pub fn returns(code: &[u8]) -> Vec<u64> {
    use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic};
    let mut decoder = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    let mut found = Vec::new();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        if instruction.mnemonic() == Mnemonic::Ret {
            found.push(instruction.ip());
        }
    }
    found
}

/// The names of the functions DWARF describes as inlined: each has an
/// abstract `DW_TAG_subprogram` with `DW_AT_inline`, which its inlined copies
/// (`DW_TAG_inlined_subroutine`) refer to.
fn inlined(file: &object::File) -> Option<BTreeSet<String>> {
    file.section_by_name(".debug_info")?;
    let load = |id: gimli::SectionId| -> Result<Cow<'_, [u8]>, gimli::Error> {
        Ok(file
            .section_by_name(id.name())
            .and_then(|s| section_data(&s))
            .unwrap_or(Cow::Borrowed(&[])))
    };
    let sections = gimli::DwarfSections::load(load).ok()?;
    let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, gimli::LittleEndian));
    let mut names = BTreeSet::new();
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        let mut entries = unit.entries();
        while let Ok(Some(entry)) = entries.next_dfs() {
            if entry.tag() != gimli::DW_TAG_subprogram
                || entry.attr_value(gimli::DW_AT_inline).is_none()
            {
                continue;
            }
            if let Some(name) = entry
                .attr_value(gimli::DW_AT_name)
                .and_then(|v| dwarf.attr_string(&unit, v).ok())
            {
                names.insert(name.to_string_lossy().into_owned());
            }
        }
    }
    Some(names)
}

/// A section's bytes, inflated when the linker compressed them (Go does, with
/// zlib, by default).
fn section_data<'a>(section: &object::Section<'a, '_>) -> Option<Cow<'a, [u8]>> {
    let compressed = section.compressed_data().ok()?;
    match compressed.format {
        object::CompressionFormat::None => Some(Cow::Borrowed(compressed.data)),
        object::CompressionFormat::Zlib => {
            let mut out = Vec::with_capacity(compressed.uncompressed_size as usize);
            flate2::read::ZlibDecoder::new(compressed.data)
                .read_to_end(&mut out)
                .ok()?;
            Some(Cow::Owned(out))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_ret_and_not_a_c3_byte_inside_another_instruction() {
        let code = [
            0xb8, 0xc3, 0x00, 0x00, 0x00, // mov eax, 0xc3
            0x48, 0x85, 0xc0, // test rax, rax
            0x74, 0x01, // je +1
            0xc3, // ret
            0x48, 0x8b, 0x80, 0xc3, 0x00, 0x00, 0x00, // mov rax, [rax + 0xc3]
            0xc3, // ret
            0xcc, // int3 (padding)
        ];
        assert_eq!(returns(&code), vec![10, 18]);
    }

    #[test]
    fn reads_the_version_go_stores_inline() {
        let mut data = b"\xff Go buildinf:\x08\x02".to_vec();
        data.resize(32, 0);
        data.push(9);
        data.extend_from_slice(b"go1.26.0x");
        assert_eq!(build_version(&data).as_deref(), Some("go1.26.0x"));
        // The pre-1.18 form points at the version instead.
        data[15] = 0;
        assert_eq!(build_version(&data), None);
    }

    #[test]
    fn go_1_18_and_newer_are_supported() {
        let go = |v: &str| GoBinary {
            version: Some(v.into()),
            inlined: None,
        };
        assert_eq!(go("go1.26.0").unsupported(), None);
        assert_eq!(go("go1.18").unsupported(), None);
        let old = go("go1.17.13").unsupported().unwrap();
        assert!(old.contains("built with go1.17.13"), "{old}");
        assert!(GoBinary::default().unsupported().is_some());
    }

    #[test]
    fn reads_the_go_tools_own_version_and_returns() {
        // Go is on every machine of this kind; its own binary was built by Go.
        let Some(go) = which::which("go")
            .ok()
            .and_then(|p| std::fs::canonicalize(p).ok())
        else {
            assert_ne!(
                std::env::var("OTEL_RUN_TEST_REQUIRE_ALL").as_deref(),
                Ok("1"),
                "missing `go` on PATH"
            );
            return;
        };
        let binary = super::super::symbols::Binary::read(&go).unwrap();
        let info = binary.go.as_ref().expect("a Go binary");
        assert!(
            info.version.as_deref().unwrap().starts_with("go1."),
            "{info:?}"
        );
        assert_eq!(info.unsupported(), None);
        let main = binary.matching("main.main").next().unwrap();
        assert!(!returns(&binary.code(main).unwrap()).is_empty());
    }
}
