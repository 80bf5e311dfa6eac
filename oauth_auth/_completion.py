"""`oauth-auth completion bash|zsh|fish`: completion scripts generated from the parser.

The scripts are tables, not code: for every command path (``""``, ``"login"``,
``"registry token"``...) the words that may follow (its subcommands and flags), drawn
from the argparse parser itself, so a new flag is completed without touching this file.
``--profile`` completes the configured profile names (`oauth-auth profiles --names`).
"""

from __future__ import annotations

import argparse
import shlex

__all__ = ["script", "table"]

Table = dict[str, tuple[list[str], list[str], dict[str, list[str]]]]


def table(parser: argparse.ArgumentParser) -> Table:
    """path -> (subcommands, flags, {flag: its choices})."""
    out: Table = {}

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        subs: list[str] = []
        flags: list[str] = []
        choices: dict[str, list[str]] = {}
        for action in p._actions:  # argparse has no public way to list its actions
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    subs.append(name)
                    walk(child, f"{path} {name}".strip())
            elif action.option_strings:
                if action.help == argparse.SUPPRESS:
                    continue
                flags.extend(s for s in action.option_strings if s.startswith("--"))
                if action.choices:
                    for flag in action.option_strings:
                        choices[flag] = [str(c) for c in action.choices]
            elif action.choices:  # a positional with choices (completion's shell)
                subs.extend(str(c) for c in action.choices)
        out[path] = (subs, flags, choices)

    walk(parser, "")
    return out


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    """The completion script for `shell` ("bash", "zsh" or "fish")."""
    data = table(parser)
    if shell == "fish":
        return _fish(data)
    body = _bash(data)
    if shell == "zsh":
        return "#compdef oauth-auth\nautoload -U +X bashcompinit && bashcompinit\n" + body
    return body


def _bash(data: Table) -> str:
    cases = []
    for path, (subs, flags, choices) in sorted(data.items()):
        words = " ".join(subs + flags)
        cases.append(f"    {shlex.quote(path or '-')}) words={shlex.quote(words)} ;;")
        for flag, values in sorted(choices.items()):
            cases.append(f"    {shlex.quote((path or '-') + ' ' + flag)})"
                         f" words={shlex.quote(' '.join(values))} ;;")
    return f"""# oauth-auth completion for bash: source <(oauth-auth completion bash)
_oauth_auth() {{
  local cur prev path="" w i words=""
  cur="${{COMP_WORDS[COMP_CWORD]}}"
  prev="${{COMP_WORDS[COMP_CWORD-1]}}"
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="${{COMP_WORDS[i]}}"
    case "$w" in -*) ;; *)
      case "${{COMP_WORDS[i-1]}}" in --*) ;; *) path="${{path:+$path }}$w" ;; esac ;;
    esac
  done
  if [ "$prev" = "--profile" ]; then
    COMPREPLY=($(compgen -W "$(oauth-auth profiles --names 2>/dev/null)" -- "$cur"))
    return
  fi
  local key="${{path:--}}"
  case "$key $prev" in
{chr(10).join(c for c in cases if ' --' in c.split(')')[0])}
    *)
      case "$key" in
{chr(10).join(c for c in cases if ' --' not in c.split(')')[0])}
        *) words="" ;;
      esac ;;
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -F _oauth_auth oauth-auth
"""


def _fish(data: Table) -> str:
    lines = ["# oauth-auth completion for fish:",
             "#   oauth-auth completion fish > ~/.config/fish/completions/oauth-auth.fish",
             "complete -c oauth-auth -f"]
    for path, (subs, flags, choices) in sorted(data.items()):
        words = path.split()
        if not words:
            cond = "__fish_use_subcommand"
        else:
            seen = " ".join(f"; and __fish_seen_subcommand_from {shlex.quote(w)}"
                            for w in words)[6:]
            cond = seen
        for sub in subs:
            lines.append(f"complete -c oauth-auth -n {shlex.quote(cond)} -a {shlex.quote(sub)}")
        for flag in flags:
            extra = ""
            if flag in choices:
                extra = f" -x -a {shlex.quote(' '.join(choices[flag]))}"
            elif flag == "--profile":
                extra = " -x -a '(oauth-auth profiles --names 2>/dev/null)'"
            lines.append(f"complete -c oauth-auth -n {shlex.quote(cond)} -l {flag[2:]}{extra}")
    return "\n".join(lines) + "\n"
