#!/usr/bin/env python3
"""Prints the addresses of calls into core's panic functions in a disassembly (stdin, from
`llvm-objdump -d --no-show-raw-insn`), outside those functions. Direct branches carry their
target symbol; RISC-V `auipc` + `jalr` pairs are resolved here."""
import re
import sys

PATTERN = re.compile(
    r"panicking|index_fail|index_len_fail|index_order_fail|bounds_check|unwrap_failed|"
    r"expect_failed|len_mismatch"
)
header = re.compile(r"^([0-9a-f]+) <(.*)>:$")
insn = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")
lines = sys.stdin.read().splitlines()
panics = {int(m.group(1), 16) for m in map(header.match, lines) if m and PATTERN.search(m.group(2))}
inside, auipc = False, {}
for line in lines:
    m = header.match(line)
    if m:
        inside = bool(PATTERN.search(m.group(2)))
        auipc = {}
        continue
    m = insn.match(line)
    if not m or inside:
        continue
    addr, op, args = int(m.group(1), 16), m.group(2), m.group(3)
    target = re.search(r"<([^>]*)>", args)
    if target and PATTERN.search(target.group(1)) and not line.rstrip().endswith(">:"):
        print(f"{addr:x}")
        continue
    if op == "auipc":
        reg, imm = [x.strip() for x in args.split(",")[:2]]
        imm = int(imm, 0)
        if imm >= 1 << 19:  # a 20-bit immediate printed unsigned
            imm -= 1 << 20
        auipc[reg] = (addr + (imm << 12)) & 0xFFFFFFFF
    elif op == "jalr" and "(" in args:
        off, reg = re.match(r".*?(-?\w+)\((\w+)\)", args).groups()
        if reg in auipc and (auipc[reg] + int(off, 0)) & 0xFFFFFFFF in panics:
            print(f"{addr:x}")
