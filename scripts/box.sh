#!/usr/bin/env bash
# The box side of "train on a rented GPU": run it in a fresh `git clone` of this repository.
#
#   AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... scripts/box.sh -n big-run -- -S model=small -S train.max_steps=20000
#
# 1. install (skip with --no-install when the environment is ready);
# 2. check that the DVC remote has credentials (environment or .dvc/config.local, never committed);
# 3. `dvc exp run --pull --allow-missing` the experiment with the given -S overrides: stages whose
#    inputs and params did not change are skipped without downloading their outputs, and only the
#    data the rerun stages read is pulled (no full `dvc pull`);
# 4. `dvc exp push origin NAME`: the experiment's git ref to origin, its data and model to the remote;
#    with --branch B also `dvc exp branch NAME B` and `git push origin B`.
# Back home: `dvc exp pull origin NAME && dvc exp apply NAME` (or check out branch B and `dvc pull`).
set -euo pipefail

name="box-$(date -u +%Y%m%d-%H%M%S)"
branch=""
install=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    -n|--name) name="$2"; shift 2 ;;
    --branch) branch="$2"; shift 2 ;;
    --no-install) install=0; shift ;;
    --) shift; break ;;
    *) echo "box.sh: unknown option $1 (usage: box.sh [-n NAME] [--branch B] [--no-install] [-- dvc exp run args])" >&2; exit 2 ;;
  esac
done

if [[ $install == 1 ]]; then
  python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
  pip install --quiet --upgrade pip
  pip install --quiet 'torch>=2.3,<2.14'    # the CUDA build PyPI serves on a GPU box
  pip install --quiet -e .
fi

remote="$(dvc config core.remote 2>/dev/null || true)"
if [[ -z "$remote" ]]; then
  echo "box.sh: no default DVC remote; see README 'Remote storage'" >&2
  exit 1
fi
url="$(dvc remote list | awk -v r="$remote" '$1 == r {print $2}')"
if [[ "$url" == s3://* && -z "${AWS_ACCESS_KEY_ID:-}${AWS_PROFILE:-}" ]] \
   && ! dvc config --local "remote.$remote.access_key_id" >/dev/null 2>&1 \
   && [[ ! -f "${AWS_SHARED_CREDENTIALS_FILE:-$HOME/.aws/credentials}" ]]; then
  echo "box.sh: remote '$remote' ($url) has no credentials: export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY," >&2
  echo "        or run: dvc remote modify --local $remote access_key_id ... (and secret_access_key)" >&2
  exit 1
fi

dvc exp run --pull --allow-missing -n "$name" "$@"
dvc exp push origin "$name"
if [[ -n "$branch" ]]; then
  dvc exp branch "$name" "$branch"
  git push origin "$branch"
fi
echo "box.sh: pushed experiment $name; at home: dvc exp pull origin $name && dvc exp apply $name"
