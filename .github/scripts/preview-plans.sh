#!/usr/bin/env bash
# Offline plans of the base and the head of a pull request, for every stack either side has.
#
#   .github/scripts/preview-plans.sh BASE_DIR [OUT]      (run from the head's checkout)
#
# For each stack S of a Pulumi.S.yaml in the head or the base (so a stack deleted in the PR is
# planned in the base and shown as removed), runs `python -m infra plan --stack S --json` in each
# side that has the file, writing OUT/{head,base}/S.json and S.log; and for each environment E whose
# stacks/E.yaml has a `global:` section, its global stack (`plan --stack E --project global`) into
# OUT/{head,base}/global.E.json (cost-diff shows it as llm-fleet-global/E). A plan that fails writes
# {"stack", "exit_code", "error"} there itself (exit 2: bad config, a missing or stale
# policies/config.S.json, infeasible SLOs); one that dies without a result (exit 1, killed) gets
# that document from this script, so `cost-diff` shows every failed plan as failed, never as a
# removed stack. Exit 3 (a mandatory policy is violated) still writes the plan, with its verdict.
#
# Prints one line per side and stack, writes OUT/status (the first non-zero exit of a head plan,
# else 0) and `status=` to $GITHUB_OUTPUT when set. Exits 0: the workflow posts the cost comment
# first and fails the job afterwards. PYTHON (default .venv/bin/python) runs the plans.
# tests/cost/test_cost_workflow.py runs this script against fake plans.
set -uo pipefail

base_dir=${1:?usage: preview-plans.sh BASE_DIR [OUT]}
out=${2:-out}
python=${PYTHON:-.venv/bin/python}
case "$python" in /*) ;; *) python="$PWD/$python" ;; esac
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
mkdir -p "$out/base" "$out/head"

stacks_in() {
  local f name
  for f in "$1"/Pulumi.*.yaml; do
    [ -e "$f" ] || continue
    name=${f##*/Pulumi.}
    printf '%s\n' "${name%.yaml}"
  done
}

globals_in() {
  local f name
  for f in "$1"/stacks/*.yaml; do
    [ -e "$f" ] || continue
    grep -q '^global:' "$f" || continue
    name=${f##*/}
    printf '%s\n' "${name%.yaml}"
  done
}

meaning() {
  case "$1" in
    0) echo "ok" ;;
    2) echo "FAILED: bad input (config, policy config or SLOs)" ;;
    3) echo "a mandatory policy is violated; the plan is diffed with its verdict" ;;
    *) echo "FAILED" ;;
  esac
}

# plan SIDE DIR STACK [global]: runs the plan (of the environment STACK's global stack with
# `global`); its exit code is left in $rc.
plan() {
  local side=$1 dir=$2 stack=$3 project=${4:-} name json log safe first extra
  name=$stack
  extra=""
  set --
  if [ "$project" = global ]; then
    name="global.$stack"
    set -- --project global
    extra=', "project": "llm-fleet-global"'
  fi
  json="$out/$side/$name.json"
  log="$out/$side/$name.log"
  rm -f "$json"
  rc=0
  (cd "$dir" && "$python" -m infra plan --stack "$stack" "$@" --json "$json") >"$log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ] && [ ! -s "$json" ]; then
    safe=${stack//[^A-Za-z0-9_.-]/_}
    printf '{"stack": "%s", "exit_code": %d, "error": "the plan exited %d without a result; see the job log"%s}\n' \
      "$safe" "$rc" "$rc" "$extra" >"$json"
  fi
  first=$(grep -m1 '^error:' "$log" || true)
  echo "$side $name: exit $rc ($(meaning "$rc"))${first:+ - $first}"
}

status=0
while IFS= read -r stack; do
  [ -n "$stack" ] || continue
  if [ -f "Pulumi.$stack.yaml" ]; then
    plan head . "$stack"
    if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then status=$rc; fi
    cat "$out/head/$stack.log"
  else
    echo "head $stack: no Pulumi.$stack.yaml (deleted in this pull request: shown as removed)"
  fi
  if [ -f "$base_dir/Pulumi.$stack.yaml" ]; then
    plan base "$base_dir" "$stack"
  else
    echo "base $stack: no Pulumi.$stack.yaml (a new stack)"
  fi
done < <({ stacks_in .; stacks_in "$base_dir"; } | sort -u)

while IFS= read -r env; do
  [ -n "$env" ] || continue
  if grep -q '^global:' "stacks/$env.yaml" 2>/dev/null; then
    plan head . "$env" global
    if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then status=$rc; fi
    cat "$out/head/global.$env.log"
  else
    echo "head global.$env: no global section in stacks/$env.yaml (removed in this pull request: shown as removed)"
  fi
  if grep -q '^global:' "$base_dir/stacks/$env.yaml" 2>/dev/null; then
    plan base "$base_dir" "$env" global
  else
    echo "base global.$env: no global section in stacks/$env.yaml (a new global stack)"
  fi
done < <({ globals_in .; globals_in "$base_dir"; } | sort -u)

echo "$status" >"$out/status"
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  echo "status=$status" >>"$GITHUB_OUTPUT"
fi
echo "head status: $status"
