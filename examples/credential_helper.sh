#!/bin/sh
# oauth-auth as a credential helper: print a fresh access token, or fail loudly.
#
# `oauth-auth token` prints the access token alone on stdout (all messages go to stderr)
# and exits 0 ok, 4 login required, 1 other failure, so it can be used directly:
#
#   # Claude Code settings.json: the helper is called whenever a key is needed
#   { "apiKeyHelper": "oauth-auth llm token --gateway https://llm.example.com" }
#
#   # git, docker, kubectl exec plugins...: wrap it like this script does.
#
# Keep the token off every command line: a process's arguments are readable by every
# local user (`ps`). Never `curl -H "Authorization: Bearer $(oauth-auth token)"`; give
# curl the header on its stdin, as a config line (`-K -`), as below.
#
# This script shows the careful form: it stops on failure (a `$(...)` that fails would
# otherwise send an empty token) and tells the user how to log in.
#
# Usage: examples/credential_helper.sh [oauth-auth token flags...]
#   examples/credential_helper.sh --profile work
#   examples/credential_helper.sh llm --gateway https://llm.example.com
#   API_URL=https://api.example.com/me examples/credential_helper.sh --profile work
# $OAUTH_AUTH names the command (default: oauth-auth).
set -eu

OAUTH_AUTH=${OAUTH_AUTH:-oauth-auth}

# "llm ..." or "registry ..." selects that group: oauth-auth llm token --gateway URL
group=""
case "${1:-}" in
  llm|registry) group=$1; shift ;;
esac

if token=$($OAUTH_AUTH $group token "$@"); then
  :
else
  status=$?
  if [ "$status" -eq 4 ]; then
    echo "credential_helper: not logged in; run: $OAUTH_AUTH $group login $*" >&2
  fi
  exit "$status"
fi

if [ -n "${API_URL:-}" ]; then
  # printf is the shell's own: the header goes to curl's stdin, never onto an argv.
  printf 'header = "Authorization: Bearer %s"\n' "$token" | curl -fsS -K - "$API_URL"
  exit
fi
printf '%s\n' "$token"
