#!/usr/bin/env bash
# Renders every letter kind × locale with `doclink preview --html-out` and takes a
# screenshot of each in headless Chromium at desktop (800 px) and phone (390 px)
# widths, and at desktop width in dark mode:
# docs/letters/<kind>-<locale>-{desktop,phone,dark}.png. Chromium is installed
# from Debian when it is missing (as root). Usage: scripts/letters.sh [OUT_DIR]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/docs/letters}
work=$(mktemp -d /tmp/doclink-letters.XXXXXX)
trap 'rm -rf "$work"' EXIT
log() { echo "letters: $*" >&2; }

find_chromium() { command -v chromium || command -v chromium-browser || command -v google-chrome || true; }
chromium=$(find_chromium)
if [ -z "$chromium" ]; then
    if [ "$(id -u)" != 0 ]; then log "Chromium is not installed and this is not root: apt-get install chromium"; exit 1; fi
    log "installing Chromium from Debian"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    chromium=$(find_chromium)
fi

(cd "$root" && cargo build --quiet --bin doclink)
doclink="$root/target/debug/doclink"
mkdir -p "$out"

# The kinds and locales are the template files: <kind>/<locale>.subject.txt.
for subject in "$root"/templates/*/*.subject.txt; do
    kind=$(basename "$(dirname "$subject")")
    locale=$(basename "$subject" .subject.txt)
    case $locale in
        fr) org="Commission de règlement des litiges"
            contact="+33 1 23 45 67 89 · greffe@litiges.example.org · 12 rue de la Paix, 75002 Paris"
            signature='Marie-Hélène Duval-Lefèvre\nGreffière en chef\nCommission de règlement des litiges'
            message='À la suite de l’audience du 14 novembre, la commission a rendu sa décision.\nVous la trouverez ci-dessous, avec ses annexes.\n\nLe délai de recours court à compter de sa réception.' ;;
        *)  org="Dispute Resolution Board"
            contact="+44 20 7946 0000 · registry@disputes.example.org · 12 Peace Street, London EC1A 1AA"
            signature='Mary-Ellen Duval-Lefebvre\nChief Registrar\nDispute Resolution Board'
            message='Following the hearing on 14 November, the board has reached its decision.\nYou will find it below, with its annexes.\n\nThe time limit for an appeal runs from the day you receive it.' ;;
    esac
    event=$(python3 -c 'import json, sys; print(json.dumps({
        "event_id": "letters-" + sys.argv[1] + "-" + sys.argv[2],
        "document_key": "decisions/2026/ABC-123/2026-11-28_Decision_finale_commission_de_reglement_des_litiges_ABC-123_annexes_comprises.pdf",
        "recipient": {"email": "jane.oneil@example.org", "name": "Jane Alexandra Montgomery-Featherstonehaugh O’Neil"},
        "template": sys.argv[1], "locale": sys.argv[2], "expires_in": "7d",
        "data": {"case_number": "ABC-123/2026", "message": sys.argv[3].replace("\\n", "\n")}}))' \
        "$kind" "$locale" "$message")
    html="$work/$kind-$locale.html"
    echo "$event" | DOCLINK_ORG_NAME="$org" DOCLINK_CONTACT="$contact" DOCLINK_SIGNATURE="$signature" \
        DOCLINK_TIMEZONE=Europe/Paris DOCLINK_FROM="$org <letters@example.org>" \
        DOCLINK_LINK_BASE_URL=https://documents.example.org \
        "$doclink" preview --event - --html-out "$html" >/dev/null
    for shape in desktop:800,1400: phone:390,1400: dark:800,1400:--force-dark-mode; do
        name=${shape%%:*}; rest=${shape#*:}; size=${rest%%:*}; extra=${rest#*:}
        profile=$(mktemp -d "$work/profile.XXXXXX")
        timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
            --disable-background-networking --disable-component-update --disable-sync \
            --hide-scrollbars --force-device-scale-factor=1 --user-data-dir="$profile" $extra \
            --window-size="$size" --screenshot="$out/$kind-$locale-$name.png" "file://$html" \
            >/dev/null 2>&1
        log "wrote $out/$kind-$locale-$name.png"
    done
done
