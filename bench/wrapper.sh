#!/usr/bin/env bash
# Where a shell's CPU per command goes, piece by piece of pcl's wrapper:
# bare bash processes told, over a pipe, first `true; echo` (the floor
# that bench/scale.sh and bench/shells.sh measure), then the same with
# each piece of what an engine sends added in turn, up to the whole
# wrapper of a one-shot `px true` (the last line, beside the { } group
# it used before). Each step is the cost of one part of
# the contract (the end marker, eval's quoting, a command's redirections
# staying its own); the last is what an engine's shell pays, before any
# work of pcl's own processes. Then two ways not taken (yet), each with
# bash reading its commands as a script on its own descriptor (255)
# instead of from stdin: px's wrapper unchanged, and the redirections
# undone by the end function instead of by bash after every command. No
# pcl needed.
# Usage: bench/wrapper.sh   (SHELLS=4 RUNS=3000 ROUNDS=3 to change)
set -euo pipefail
SHELLS=${SHELLS:-4}
RUNS=${RUNS:-3000}
ROUNDS=${ROUNDS:-3}
python3 - "$SHELLS" "$RUNS" "$ROUNDS" <<'PY'
import os, select, statistics, subprocess, sys
n, runs, rounds = (int(a) for a in sys.argv[1:])
# As an engine's shell is set up: the end function, job control, and the
# engine's own copies of stdout and stderr and a /dev/null at 250-252.
END = (b"__pcl_e() { builtin printf '%s%s%d %s\\n' \"$1\" \"$2\" $? \"$-\"; }; "
       b"builtin readonly -f __pcl_e\nbuiltin set -m; trap : INT\n")
# The end function of the last step: it puts the shell's stdin, stdout
# and stderr back itself, from the engine's copies, which every command
# then sees open; stdin is /dev/null from the start.
END_RESTORING = (b"builtin exec <&252\n__pcl_e() { __pcl_s=$?; builtin exec <&252 >&250 2>&251; "
                 b"builtin printf '%s%s%d %s\\n' \"$1\" \"$2\" $__pcl_s \"$-\"; }; "
                 b"builtin readonly -f __pcl_e\nbuiltin set -m; trap : INT\n")
MARK = b"__pcl_e Ab3De Fg6Hi9\n"
REDIRS = b"<&252- >&250- 2>&251-"
# (name, what each command sends, read as a script, the setup)
steps = [
    ("true; echo (the floor)", b"true; echo\n", False, END),
    ("true; echo of a marker-long line", b"true; echo Ab3DeFg6Hi90 hmBs\n", False, END),
    ("true, then the end function", b"true\n" + MARK, False, END),
    ("eval $'true', then the end function", b"eval $'true'\n" + MARK, False, END),
    ("the same in a { } group", b"{ eval $'true'\n}\n" + MARK, False, END),
    ("the group's redirections (pcl's px before)", b"{ eval $'true'\n} " + REDIRS + b"\n" + MARK,
     False, END),
    ("eval's own redirections, no group (px now)", b"eval $'true' " + REDIRS + b"\n" + MARK,
     False, END),
    # Not used: the engine's descriptors would stay open in the command.
    ("the same, not moved (<&252 >&250 2>&251)", b"eval $'true' <&252 >&250 2>&251\n" + MARK,
     False, END),
    # Not used: bash would name its script, not itself, in its messages.
    ("px now, read as a script (bash /dev/fd/0)", b"eval $'true' " + REDIRS + b"\n" + MARK,
     True, END),
    # Not used: the engine's descriptors would stay open in the command.
    ("as a script, the end function restoring", b"eval $'true'\n" + MARK, True, END_RESTORING),
]
def setup():
    os.setsid()
    os.dup2(1, 250)
    os.dup2(2, 251)
    null = os.open("/dev/null", os.O_RDONLY)
    if null != 252:
        os.dup2(null, 252)
        os.close(null)
def cpu_us_per_command(line, script, end):
    argv = ["bash", "--noprofile", "--norc"] + (["/dev/fd/0"] if script else [])
    shells = [subprocess.Popen(argv, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, bufsize=0, preexec_fn=setup,
                               close_fds=False) for _ in range(n)]
    for s in shells:
        os.write(s.stdin.fileno(), end)
    def one_round():
        for s in shells:
            os.write(s.stdin.fileno(), line)
        for s in shells:
            select.select([s.stdout], [], [])
            os.read(s.stdout.fileno(), 256)
    def cpu_ns():
        return sum(int(open(f"/proc/{s.pid}/schedstat").read().split()[0]) for s in shells)
    for _ in range(50):
        one_round()
    before = cpu_ns()
    for _ in range(runs):
        one_round()
    us = (cpu_ns() - before) / 1000 / n / runs
    for s in shells:
        s.stdin.close()
        s.wait()
    return us
samples = {name: [] for name, *_ in steps}
for _ in range(rounds):  # interleaved, so a slow spell hits every step
    for name, line, script, end in steps:
        samples[name].append(cpu_us_per_command(line, script, end))
print(f"{n} bare bash, {os.cpu_count()} cores, {runs} commands each, median of {rounds} rounds")
floor = statistics.median(samples[steps[0][0]])
for name, line, *_ in steps:
    us = statistics.median(samples[name])
    print(f"  {name:<44} {len(line):3d} bytes  {us:6.1f} us  {us / floor:4.1f}x the floor")
PY
