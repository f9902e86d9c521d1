"""Memories as `$readmemh` files: the initialised memories of Amaranth's Verilog split out.

Amaranth's Verilog (Yosys `write_verilog`) sets a memory's contents word by word:

    reg [15:0] w10 [24:0];
    initial begin
      w10[0] = 16'h00ff;
      ...
      w10[24] = 16'h0000;
    end

one assignment per word, every word from 0 to depth - 1 in order (contents shorter than the
memory are padded with zeros by Amaranth, so every word is set and 0 means 0, RAMs included).
`split_memories` turns each such block into `initial $readmemh("<file>.hex", w10);` and the
file: one word per line, the word's bits (two's complement at the memory's width) as
zero-padded hex digits, in address order. A file is named after the memory's hierarchical
Verilog name, sanitised (`hrn_top.unit0.w10.hex`), unique even on a case-insensitive file
system. Everything else in the text stays byte for byte.

The `$readmemh` file names are bare: a tool looks them up relative to its own working
directory (Verilator's simulation, Vivado's project or xsim directory; Yosys also tries the
Verilog file's directory), so a consumer runs where the files are or copies them there
(`verilog_and_memfiles`, `write_memfiles`). Forms other than Amaranth's raise ValueError
naming the memory instead of being guessed at.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, NamedTuple

_ID = r"[A-Za-z_][A-Za-z0-9_$]*|\\\S+ "        # a Verilog identifier; an escaped one ends in a space
MODULE = re.compile(rf"^module ({_ID})\s*\(")
MEM_DECL = re.compile(rf"^(\s*)reg \[(\d+):(\d+)\] ({_ID}) \[(\d+):(\d+)\];$")
WORD_START = re.compile(rf"^\s*({_ID})\[\d+\] = ")
WORD = re.compile(rf"^\s*({_ID})\[(\d+)\] = (\d+)'s?(?:h([0-9a-fA-F]+)|d([0-9]+));$")
READMEMH = re.compile(rf'^\s*initial \$readmemh\("([^"\n]*)", ({_ID})\);$', re.M)
UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class MemFile(NamedTuple):
    """One memory split out: its file, hierarchical name, depth, width and the file's text."""
    file: str
    memory: str
    depth: int
    width: int
    hex: str


def _plain(identifier: str) -> str:
    """An identifier without the escape: `\\hrn_top.unit0 ` -> `hrn_top.unit0`."""
    return identifier[1:-1] if identifier.startswith("\\") else identifier


def default_file_name(module: str | None, memory: str) -> str:
    """`<module>.<memory>.hex`, characters other than letters, digits, `_`, `.`, `-` as `_`."""
    return UNSAFE.sub("_", f"{module}.{memory}" if module else memory) + ".hex"


def _unique(name: str, taken: set) -> str:
    """`name`, or `<stem>_<n>.hex` with the first n that no file taken uses (case-insensitively)."""
    stem, ext = (name[:-4], ".hex") if name.endswith(".hex") else (name, "")
    n, out = 1, name
    while out.casefold() in taken:
        n += 1
        out = f"{stem}_{n}{ext}"
    taken.add(out.casefold())
    return out


def _words(lines: list, start: int, ident: str, name: str, width: int, depth: int) -> tuple[list, int]:
    """The words of memory `ident`'s initial block whose first word line is lines[start]
    (values as unsigned `width`-bit integers) and the index of its `end` line; ValueError
    naming the memory (`name`) on any other form."""
    words, i = [], start
    while i < len(lines) and lines[i].strip() != "end":
        m = WORD.match(lines[i].rstrip("\n"))
        if not m or m.group(1) != ident or int(m.group(2)) != len(words) or int(m.group(3)) != width:
            raise ValueError(f"memory {name}: unexpected line {i + 1} in its initial block: {lines[i].strip()!r}")
        value = int(m.group(4), 16) if m.group(4) is not None else int(m.group(5))
        if value >> width:
            raise ValueError(f"memory {name}: word {len(words)} does not fit {width} bits: {lines[i].strip()!r}")
        words.append(value)
        i += 1
    if i == len(lines):
        raise ValueError(f"memory {name}: initial block without its end")
    if len(words) != depth:
        raise ValueError(f"memory {name}: {len(words)} words set of {depth}")
    return words, i


def hex_text(words, width: int) -> str:
    """$readmemh text: one word per line, zero-padded to the width's hex digits."""
    digits = max(1, -(-width // 4))
    return "".join(f"{w:0{digits}x}\n" for w in words)


def _split_block(lines: list, i: int, decl: re.Match, module: str | None, file_name, taken: set
                 ) -> tuple[MemFile, list, int]:
    """The memory declared on lines[i] (`decl`) whose initial block follows: its MemFile, the
    lines that replace declaration and block, and the index past the block."""
    indent, msb, lsb, ident, last, first = decl.groups()
    name = f"{module}.{_plain(ident)}" if module else _plain(ident)
    if int(lsb) or int(first):
        raise ValueError(f"memory {name}: declaration not of the form reg [W-1:0] m [D-1:0]: {lines[i].strip()!r}")
    width, depth = int(msb) + 1, int(last) + 1
    words, end = _words(lines, i + 2, ident, name, width, depth)
    file = _unique(file_name(module, _plain(ident)), taken)
    if '"' in file or "\n" in file:
        raise ValueError(f"memory {name}: file name {file!r} cannot be written in Verilog")
    text = [lines[i], f'{indent}initial $readmemh("{file}", {ident});\n']
    return MemFile(file, name, depth, width, hex_text(words, width)), text, end + 1


def extract_memories(text: str, file_name: Callable[[str | None, str], str] = default_file_name
                     ) -> tuple[str, list[MemFile]]:
    """`text` with every word-by-word initial block of a memory replaced by `$readmemh` of a
    file (named by `file_name(module, memory)`, made unique), and the memories split out."""
    lines = text.splitlines(keepends=True)
    out, mems, taken, module, i = [], [], set(), None, 0
    while i < len(lines):
        line = lines[i]
        m = MODULE.match(line)
        module = _plain(m.group(1)) if m else module
        decl = MEM_DECL.match(line.rstrip("\n"))
        if decl and i + 1 < len(lines) and lines[i + 1].rstrip("\n") == f"{decl.group(1)}initial begin":
            mem, replaced, i = _split_block(lines, i, decl, module, file_name, taken)
            mems.append(mem)
            out += replaced
            continue
        word = WORD_START.match(lines[i + 1]) if line.strip() == "initial begin" and i + 1 < len(lines) else None
        if word:
            raise ValueError(f"memory {_plain(word.group(1))}: initial block on line {i + 1} does not follow "
                             f"a declaration reg [W-1:0] m [D-1:0]")
        out.append(line)
        i += 1
    return "".join(out), mems


def split_memories(text: str) -> tuple[str, dict[str, str]]:
    """`text` with its initialised memories as `$readmemh` files: (new text, {file: hex text})."""
    text, mems = extract_memories(text)
    return text, {m.file: m.hex for m in mems}


def memfile_names(text: str) -> list[str]:
    """The files the `initial $readmemh("<file>", m);` lines of `text` read, in order."""
    return [m.group(1) for m in READMEMH.finditer(text)]


def verilog_and_memfiles(path: str | Path) -> tuple[str, dict[str, str]]:
    """A Verilog file's text with its initialised memories as `$readmemh` files, and every file
    it then reads: those split out of inline initial blocks and those already beside it.
    ValueError when a file it reads is not a bare name or is missing."""
    path = Path(path)
    text, files = split_memories(path.read_text())
    for name in memfile_names(text):
        if name in files:
            continue
        if Path(name).name != name:
            raise ValueError(f"{path}: $readmemh of {name!r}, not a bare file name beside the Verilog")
        if not (path.parent / name).is_file():
            raise ValueError(f"{path}: memory file {name} missing (it belongs beside the Verilog)")
        files[name] = (path.parent / name).read_text()
    return text, files


def write_memfiles(directory: str | Path, files: dict[str, str]) -> list[Path]:
    """Write the memory files into `directory` (created if missing; a file already holding its
    text is left alone); returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, hex_words in files.items():
        path = directory / name
        if not path.is_file() or path.read_text() != hex_words:
            tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
            tmp.write_text(hex_words)
            tmp.replace(path)
        paths.append(path)
    return paths
