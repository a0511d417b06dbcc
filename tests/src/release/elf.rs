//! Just enough ELF reading to tell a static executable from a dynamic one: the program headers (a
//! `PT_INTERP` names the dynamic loader) and the dynamic section (each `DT_NEEDED` names a shared library).
//!
//! A musl static-pie has a `PT_DYNAMIC` (for its own relocations) but neither of those. Only 64-bit
//! little-endian files are read: the two release platforms, amd64 and arm64.

use anyhow::{Context as _, bail, ensure};

/// `e_machine` of x86-64.
pub const EM_X86_64: u16 = 62;
/// `e_machine` of AArch64.
pub const EM_AARCH64: u16 = 183;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;

/// What an executable needs from the system to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linkage {
    /// `e_machine`.
    pub machine: u16,
    /// `e_type`: 2 for a fixed-address executable, 3 for a position-independent one (or a library).
    pub kind: u16,
    /// The dynamic loader of `PT_INTERP`, if any.
    pub interpreter: Option<String>,
    /// The `DT_NEEDED` libraries.
    pub needed: Vec<String>,
}

impl Linkage {
    /// Starts without any file of the system: no loader, no shared library.
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none() && self.needed.is_empty()
    }
}

fn u16_at(b: &[u8], at: usize) -> anyhow::Result<u16> {
    let bytes = b.get(at..at + 2).with_context(|| format!("truncated ELF: no 2 bytes at {at}"))?;
    Ok(u16::from_le_bytes(bytes.try_into()?))
}

fn u32_at(b: &[u8], at: usize) -> anyhow::Result<u32> {
    let bytes = b.get(at..at + 4).with_context(|| format!("truncated ELF: no 4 bytes at {at}"))?;
    Ok(u32::from_le_bytes(bytes.try_into()?))
}

fn u64_at(b: &[u8], at: usize) -> anyhow::Result<u64> {
    let bytes = b.get(at..at + 8).with_context(|| format!("truncated ELF: no 8 bytes at {at}"))?;
    Ok(u64::from_le_bytes(bytes.try_into()?))
}

/// A NUL-terminated string at file offset `at`.
fn c_str(b: &[u8], at: usize) -> anyhow::Result<String> {
    let rest = b.get(at..).with_context(|| format!("string offset {at} past the end"))?;
    let end = rest.iter().position(|&c| c == 0).context("unterminated string")?;
    Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// One program header: type, file offset, virtual address, size in the file.
struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// Reads the linkage of the ELF file `bytes`.
pub fn linkage(bytes: &[u8]) -> anyhow::Result<Linkage> {
    ensure!(bytes.starts_with(b"\x7fELF"), "not an ELF file (no \\x7fELF magic)");
    ensure!(bytes.get(4) == Some(&2), "not a 64-bit ELF file (EI_CLASS {:?})", bytes.get(4));
    ensure!(bytes.get(5) == Some(&1), "not a little-endian ELF file (EI_DATA {:?})", bytes.get(5));
    let kind = u16_at(bytes, 16)?;
    let machine = u16_at(bytes, 18)?;
    let phoff = usize::try_from(u64_at(bytes, 32)?)?;
    let phentsize = usize::from(u16_at(bytes, 54)?);
    let phnum = usize::from(u16_at(bytes, 56)?);
    ensure!(phentsize >= 56, "program header entries of {phentsize} bytes (64-bit ELF has 56)");
    let segments = (0..phnum)
        .map(|i| {
            let at = phoff + i * phentsize;
            Ok(Segment {
                kind: u32_at(bytes, at)?,
                offset: u64_at(bytes, at + 8)?,
                vaddr: u64_at(bytes, at + 16)?,
                filesz: u64_at(bytes, at + 32)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let interpreter = match segments.iter().find(|s| s.kind == PT_INTERP) {
        Some(s) => Some(c_str(bytes, usize::try_from(s.offset)?)?),
        None => None,
    };
    let mut needed = Vec::new();
    if let Some(dynamic) = segments.iter().find(|s| s.kind == PT_DYNAMIC) {
        let (mut names, mut strtab) = (Vec::new(), None);
        for i in 0..dynamic.filesz / 16 {
            let at = usize::try_from(dynamic.offset + i * 16)?;
            match (u64_at(bytes, at)?, u64_at(bytes, at + 8)?) {
                (DT_NULL, _) => break,
                (DT_NEEDED, name) => names.push(name),
                (DT_STRTAB, addr) => strtab = Some(addr),
                _ => {}
            }
        }
        if !names.is_empty() {
            let strtab = strtab.context("DT_NEEDED entries without a DT_STRTAB")?;
            // DT_STRTAB is an address: the PT_LOAD segment holding it gives its place in the file.
            let Some(load) =
                segments.iter().find(|s| s.kind == PT_LOAD && (s.vaddr..s.vaddr + s.filesz).contains(&strtab))
            else {
                bail!("DT_STRTAB {strtab:#x} is in no PT_LOAD segment");
            };
            let base = strtab - load.vaddr + load.offset;
            for name in names {
                needed.push(c_str(bytes, usize::try_from(base + name)?)?);
            }
        }
    }
    Ok(Linkage { machine, kind, interpreter, needed })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header and program headers (`(type, offset, vaddr, filesz)`), then `tail`.
    fn elf(machine: u16, segments: &[(u32, u64, u64, u64)], tail: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[16..18].copy_from_slice(&3u16.to_le_bytes());
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        for &(kind, offset, vaddr, filesz) in segments {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&kind.to_le_bytes());
            ph[8..16].copy_from_slice(&offset.to_le_bytes());
            ph[16..24].copy_from_slice(&vaddr.to_le_bytes());
            ph[32..40].copy_from_slice(&filesz.to_le_bytes());
            b.extend(ph);
        }
        b.extend_from_slice(tail);
        b
    }

    #[test]
    fn a_static_pie_with_its_own_dynamic_section_is_static() {
        // After the header and 2 program headers (64 + 112 bytes): a dynamic section with DT_NULL only.
        let bytes = elf(EM_X86_64, &[(PT_LOAD, 0, 0, 192), (PT_DYNAMIC, 176, 176, 16)], &[0u8; 16]);
        let linkage = linkage(&bytes).unwrap();
        assert!(linkage.is_static(), "{linkage:?}");
        assert_eq!((linkage.machine, linkage.kind), (EM_X86_64, 3));
    }

    #[test]
    fn an_interpreter_and_needed_libraries_are_found() {
        // Header and 3 program headers: 232 bytes; then the dynamic section (3 entries, 48 bytes) at 232,
        // the string table at 280 ("\0libc.so.6\0") and the interpreter path after it at 291.
        let mut tail = Vec::new();
        for (tag, val) in [(DT_NEEDED, 1u64), (DT_STRTAB, 0x1000 + 280), (DT_NULL, 0)] {
            tail.extend(tag.to_le_bytes());
            tail.extend(val.to_le_bytes());
        }
        tail.extend(b"\0libc.so.6\0/lib/ld-musl-aarch64.so.1\0");
        let segments = [(PT_LOAD, 0, 0x1000, 400), (PT_DYNAMIC, 232, 0x1000 + 232, 48), (PT_INTERP, 291, 0, 27)];
        let linkage = linkage(&elf(EM_AARCH64, &segments, &tail)).unwrap();
        assert_eq!(linkage.interpreter.as_deref(), Some("/lib/ld-musl-aarch64.so.1"));
        assert_eq!(linkage.needed, ["libc.so.6"]);
        assert!(!linkage.is_static());
    }

    /// This test binary is built for the host's glibc target: a dynamic executable.
    #[test]
    fn the_running_test_binary_is_dynamic() {
        let bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let linkage = linkage(&bytes).unwrap();
        assert!(linkage.interpreter.is_some(), "{linkage:?}");
        assert!(linkage.needed.iter().any(|n| n.starts_with("libc.so")), "{linkage:?}");
    }

    #[test]
    fn other_files_are_refused_with_the_reason() {
        assert!(linkage(b"#!/bin/sh\n").unwrap_err().to_string().contains("not an ELF"));
        let truncated = &elf(EM_X86_64, &[(PT_LOAD, 0, 0, 10)], &[])[..80];
        assert!(linkage(truncated).unwrap_err().to_string().contains("truncated"));
    }
}
