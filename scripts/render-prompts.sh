#!/usr/bin/env bash
# Renders every prompt of flows/prompts.toml and every segment of
# flows/segments.toml to WAV with espeak-ng, so a fresh checkout has audible
# prompts: flows/audio/<lang>/<id>.wav and flows/audio/<lang>/seg/<id>.wav.
# Studio recordings override these: name them with `audio.<lang> = "…"` in the
# catalogue, or drop them in place (existing files are kept unless --force).
#
# Needs: espeak-ng (Debian: apt-get install -y espeak-ng), python3 >= 3.11.
set -euo pipefail
cd "$(dirname "$0")/../flows"
force=0
[ "${1:-}" = "--force" ] && force=1
command -v espeak-ng >/dev/null || { echo "espeak-ng is not installed (apt-get install -y espeak-ng)" >&2; exit 2; }
python3 - "$force" <<'PY'
import os, subprocess, sys, tomllib
force = sys.argv[1] == "1"
voices = {"zh": "cmn", "en": "en-gb"}
jobs = []
with open("prompts.toml", "rb") as f:
    for pid, entry in tomllib.load(f).items():
        for lang, voice in voices.items():
            text = entry.get(lang)
            if text:
                path = entry.get("audio", {}).get(lang, f"audio/{lang}/{pid}.wav")
                jobs.append((path, voice, text))
with open("segments.toml", "rb") as f:
    for lang, segs in tomllib.load(f).items():
        for sid, text in segs.items():
            jobs.append((f"audio/{lang}/seg/{sid}.wav", voices[lang], text))
made = 0
for path, voice, text in jobs:
    if os.path.exists(path) and not force:
        continue
    os.makedirs(os.path.dirname(path), exist_ok=True)
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", path, text], check=True)
    made += 1
print(f"rendered {made} of {len(jobs)} prompts and segments into flows/audio/")
PY
