#!/usr/bin/env bash
# Mutation testing (issue 17; docs/testing.md): mutmut over the modules that decide numbers and safety,
# each against its own fast tests, then a table of killed / survived / timeout / equivalent / score per
# module. Not part of CI. Resumable: a rerun continues; --fresh starts the named modules over.
#   bash scripts/mutation.sh                 # every module: labels download checkpoints grouped_bn deploy flops
#                                            # throughput configs (cgrseg/mmseg_config.py, cgrseg/runner/config_rewrites.py) judge
#   bash scripts/mutation.sh deploy judge    # some modules;  --list names them, --report prints the table
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.mutation/venv
if [ ! -x .venv/bin/python ]; then
    echo "scripts/mutation.sh: error: .venv is missing; run scripts/setup.sh first" >&2
    exit 2
fi
if ! cmp -s envs/mutation.txt "$VENV/installed.txt" 2>/dev/null; then
    rm -rf "$VENV"
    .venv/bin/python -m venv "$VENV"
    # layered on .venv: its packages (torch, mmseg, pytest, the editable cgrseg) are seen, not copied
    site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    own=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "import site; site.addsitedir('$site')" > "$own/cgrseg-venv.pth"
    "$VENV/bin/python" -m pip --isolated install --quiet --no-deps -r envs/mutation.txt
    cp envs/mutation.txt "$VENV/installed.txt"
fi
exec nice -n "${MUTATION_NICE:-10}" "$VENV/bin/python" scripts/mutation.py "$@"
