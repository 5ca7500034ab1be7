//! Just enough ELF to tell what built a native program: Go leaves a
//! `.go.buildinfo` section, rustc a `rustc version` line in `.comment`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The toolchain that built a native executable, when it can be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toolchain {
    Go,
    Rust,
    Other,
}

/// `None` when `path` is not a 64-bit little-endian ELF file.
pub fn toolchain(path: &Path) -> Option<Toolchain> {
    let mut file = File::open(path).ok()?;
    let mut header = [0u8; 64];
    file.read_exact(&mut header).ok()?;
    // Magic, ELFCLASS64, ELFDATA2LSB.
    if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return None;
    }
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let u32_at =
        |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
    let u64_at =
        |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let section_headers = u64_at(&header, 0x28);
    let entry_size = usize::from(u16_at(&header, 0x3A));
    let count = usize::from(u16_at(&header, 0x3C));
    let names_index = usize::from(u16_at(&header, 0x3E));
    if entry_size < 0x28 || count == 0 || count > 4096 || names_index >= count {
        return Some(Toolchain::Other);
    }
    let mut table = vec![0u8; entry_size * count];
    file.seek(SeekFrom::Start(section_headers)).ok()?;
    file.read_exact(&mut table).ok()?;
    let section = |i: usize| {
        let entry = &table[i * entry_size..(i + 1) * entry_size];
        (
            u32_at(entry, 0) as usize,
            u64_at(entry, 0x18),
            u64_at(entry, 0x20),
        )
    };
    let read = |file: &mut File, offset: u64, size: u64| -> Option<Vec<u8>> {
        let mut bytes = vec![0u8; size.min(1 << 20) as usize];
        file.seek(SeekFrom::Start(offset)).ok()?;
        file.read_exact(&mut bytes).ok()?;
        Some(bytes)
    };
    let (_, names_offset, names_size) = section(names_index);
    let names = read(&mut file, names_offset, names_size)?;
    let name_of = |at: usize| {
        let rest = names.get(at..).unwrap_or_default();
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        &rest[..end]
    };
    let mut comment = None;
    for i in 0..count {
        let (name, offset, size) = section(i);
        match name_of(name) {
            b".go.buildinfo" => return Some(Toolchain::Go),
            b".comment" => comment = Some((offset, size)),
            _ => {}
        }
    }
    let rustc = comment
        .and_then(|(offset, size)| read(&mut file, offset, size.min(4096)))
        .is_some_and(|text| text.windows(13).any(|w| w == b"rustc version"));
    Some(if rustc {
        Toolchain::Rust
    } else {
        Toolchain::Other
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_rust_from_other_binaries() {
        // The test binary itself was built by rustc.
        let me = std::env::current_exe().unwrap();
        assert_eq!(toolchain(&me), Some(Toolchain::Rust));
        assert_eq!(toolchain(Path::new("/bin/sh")), Some(Toolchain::Other));
        assert_eq!(toolchain(Path::new("Cargo.toml")), None);
    }

    #[test]
    fn tells_go_binaries() {
        // Go is on every machine of this kind; its own binary was built by Go.
        let go = which::which("go")
            .ok()
            .and_then(|p| std::fs::canonicalize(p).ok());
        if let Some(go) = go {
            assert_eq!(toolchain(&go), Some(Toolchain::Go));
        } else if std::env::var("OTEL_RUN_TEST_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!("missing `go` on PATH");
        }
    }
}
