#!/usr/bin/env python3
"""The firmware image's deepest call chain, statically: each function's
frame (its `push`, `vpush` and `sub sp` in `llvm-objdump -d`) summed along
the deepest chain of direct calls (`bl`) from `main`. Indirect calls and
recursion are not followed, so this is a cross-check of the painted-stack
measurement (`firmware/MEMORY.md`), not a bound.

    tools/firmware_stack.py [ELF] [NAME_PART ...]

ELF defaults to the release image; each NAME_PART also lists the deepest
calls of the functions whose (mangled) name contains it.
"""
import re
import subprocess
import sys

sys.setrecursionlimit(100_000)
elf = sys.argv[1] if len(sys.argv) > 1 else "firmware/target/thumbv7em-none-eabihf/release/pastiche-firmware"
asm = subprocess.run(["llvm-objdump", "-d", "--no-show-raw-insn", elf], capture_output=True, text=True, check=True).stdout
frame, calls, cur = {}, {}, None
for line in asm.splitlines():
    m = re.match(r"^([0-9a-f]+) <(.*)>:$", line)
    if m:
        if not m.group(2).startswith("$"):  # mapping symbols ($t, $d) are not functions
            cur = m.group(2)
            frame.setdefault(cur, 0)
            calls.setdefault(cur, set())
        continue
    if cur is None:
        continue
    if m := re.search(r"\tpush(\.w)?\t\{([^}]*)\}", line):
        frame[cur] += 4 * len(m.group(2).split(","))
    if m := re.search(r"\tvpush\t\{([^}]*)\}", line):
        frame[cur] += 8 * len(m.group(1).split(","))
    if m := re.search(r"\tsub(\.w|w)?\tsp, (sp, )?#(\d+)", line):
        frame[cur] += int(m.group(3))
    if m := re.search(r"\tbl\t0x[0-9a-f]+ <([^+>]*)", line):
        calls[cur].add(m.group(1))

memo = {}


def deepest(f, path=()):
    if f in memo:
        return memo[f]
    if f in path:
        return 0, []
    best = (0, [])
    for g in calls.get(f, ()):
        d = deepest(g, path + (f,))
        if d[0] > best[0]:
            best = d
    memo[f] = (frame.get(f, 0) + best[0], [f] + best[1])
    return memo[f]


main = next(n for n in frame if "__cortex_m_rt_main" in n and "trampoline" not in n)
total, chain = deepest(main)
print(f"deepest static chain from main: {total} bytes")
for f in chain:
    print(f"{frame[f]:>7}  {f[:140]}")
for part in sys.argv[2:]:
    for f in (n for n in frame if part in n):
        print(f"\n{f[:100]}: frame {frame[f]}; deepest calls:")
        for g in sorted(calls[f], key=lambda g: -deepest(g)[0])[:5]:
            print(f"{deepest(g)[0]:>7}  {g[:120]}")
