#!/usr/bin/env bash
# The sweep as the cluster's job, run on the head node (`ray exec deploy/ray-cluster.yaml 'bash …/sweep-job.sh SPACE'`):
# reads the three settings written by ray-cluster.yaml's head_setup_commands, joins the running Ray cluster.
set -euo pipefail
source ~/bubbles-study.env
cd ~/bubbles-study
exec .venv/bin/python cli.py sweep "${1:?usage: sweep-job.sh SEARCH_SPACE.yaml [more sweep options]}" \
  --address auto --storage "$BUBBLES_STORAGE" --store "$BUBBLES_STORE" "${@:2}"
