"""One email as its reader sees it, from what moto's SES received: the text part
doclink sent beside the HTML (scripts/moto_server.py keeps it), not the HTML with
its <style> block and the preheader's invisible padding. The link's signature is
shortened: a signed URL is never printed whole. Fails if the letter shown holds
markup, CSS or invisible characters.

Usage: demo_letter.py AWS_ENDPOINT_URL RECIPIENT [LINK_FILE]
(LINK_FILE receives the email's link, whole, for `doclink verify`.)"""
import json
import re
import sys
import urllib.parse
import urllib.request

# Characters a reader does not see, used as preheader padding: soft hyphen,
# combining grapheme joiner, zero-width spaces and joiners, word joiner, BOM.
INVISIBLE = re.compile("[\u00ad\u034f\u200b-\u200f\u2060-\u2064\ufeff]")
URL = re.compile(r"https://\S+")


def shown(url):
    """The URL with its signature (and policy) cut to a few characters."""
    parts = urllib.parse.urlsplit(url)
    query = [
        (k, v[:8] + "..." if k in ("Signature", "Policy") and len(v) > 8 else v)
        for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, safe="~")))


def problems(letter):
    found = []
    for what, present in (
        ("markup (<)", "<" in letter),
        ("CSS ({)", "{" in letter),
        ("the word style", "style" in letter.lower()),
        ("invisible characters", INVISIBLE.search(letter) is not None),
        ("a run of no-break spaces", "\u00a0\u00a0" in letter),
    ):
        if present:
            found.append(what)
    return found


def main():
    endpoint, recipient = sys.argv[1], sys.argv[2]
    data = json.loads(urllib.request.urlopen(endpoint + "/moto-api/data.json").read())
    messages = data["ses"]["Message"]
    print(f"emails accepted by SES: {len(messages)}")
    m = next(m for m in messages if recipient in m["destinations"]["ToAddresses"][0])
    if "text" not in m:
        sys.exit("demo_letter.py: moto kept no text part (is scripts/moto_server.py running?)")
    letter = m["text"].strip()
    links = URL.findall(letter)
    if len(sys.argv) > 3:
        with open(sys.argv[3], "w") as out:
            out.write(links[0])
    print("From:   ", m["source"])
    print("To:     ", m["destinations"]["ToAddresses"][0])
    print("Subject:", m["subject"])
    print()
    print(URL.sub(lambda link: shown(link.group(0)), letter))
    wrong = problems(letter)
    if wrong:
        sys.exit(f"demo_letter.py: the letter shown holds {', '.join(wrong)}")


if __name__ == "__main__":
    main()
