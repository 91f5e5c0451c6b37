# secret values -> redacted-N: N numbers the values of one snapshot (see dockerdoctor/redact.py), equal values
# one number, in every file of it. The numbers go on across the awk runs through the file `map` (-v map=FILE:
# "N VALUE" lines, removed before the snapshot is packed). No hash: nothing of a value is in its mask, so a
# value someone knows tells nothing of the others (a short hash of a known salt did).
function mask(v) {
  if (substr(v, 1, 9) == "redacted-") return v
  if (!(v in num)) { num[v] = ++last; if (map != "") print last " " v >> map }
  n++
  return "redacted-" num[v]
}
# rule(s, re, head, cut): in every match of re (on the lower-cased line), the value is what follows the part
# `head` matches at its start, less `cut` chars at its end
function rule(s, re, head, cut,   out, low, a, b, m, v) {
  out = ""
  low = tolower(s)
  while (match(low, re)) {
    a = RSTART; b = RSTART + RLENGTH
    m = substr(low, a, RLENGTH)
    match(m, head)
    v = substr(s, a + RLENGTH, b - a - RLENGTH - cut)
    sub(/[ \t]+$/, "", v)
    if (v == "") { out = out substr(s, 1, b - 1); s = substr(s, b); low = substr(low, b); continue }
    out = out substr(s, 1, a + RLENGTH - 1) mask(v)
    s = substr(s, a + RLENGTH + length(v)); low = substr(low, a + RLENGTH + length(v))
  }
  return out s
}
# qmask(s): every quoted string of s (a TOML value: one string or an array) masked, a leading Basic/Bearer kept
function qmask(s,   out, v, pre, cq) {
  out = ""
  while (match(s, /"[^"]*"|'[^']*'/)) {
    out = out substr(s, 1, RSTART)
    v = substr(s, RSTART + 1, RLENGTH - 2)
    cq = substr(s, RSTART + RLENGTH - 1, 1)
    s = substr(s, RSTART + RLENGTH)
    pre = ""
    if (match(tolower(v), /^(basic|bearer|token)[ \t]+/)) { pre = substr(v, 1, RLENGTH); v = substr(v, RLENGTH + 1) }
    out = out pre (v == "" ? "" : mask(v)) cq
  }
  return out s
}
BEGIN {
  W = "(pass(word|wd|phrase)?|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential)"
  N = "[a-z0-9_.-]*" W "[a-z0-9_.-]*"
  Q = "pass|secret|token|key|credential|auth|login|@"
  T = "^[ \t]*[\"']?(authorization|auth|" N ")[\"']?[ \t]*=[ \t]*[[\"']"
  n = 0
  last = 0
  if (map != "") {
    while ((getline line < map) > 0) { i = index(line, " "); num[substr(line, i + 1)] = substr(line, 1, i - 1) + 0; last++ }
    close(map)
  }
  arr = 0
  pem = 0
}
{
  s = $0
  low = tolower(s)
  if (pem) {  # inside a PEM block (a certificate): kept as it is, up to its -----END ...----- line
    if (s ~ /-----END [^-]*-----/) pem = 0
    print s
    next
  }
  if (index(s, "-----BEGIN ")) {
    pem = !(substr(s, index(s, "-----BEGIN ")) ~ /-----END [^-]*-----/)
    print s
    next
  }
  if (arr) {  # inside a TOML array of secrets that began on an earlier line
    if (length(s) > 65536) { n++; print "[a line of " length(s) " bytes in a secret array: not collected by dockerdoctor]"; next }
    if (index(s, "]")) arr = 0
    print qmask(s)
    next
  }
  if (low !~ Q) { print s; next }  # most lines: no secret word, one linear pass
  if (length(s) > 65536) {  # a matcher may be slow on a huge line: drop it rather than keep a secret
    n++
    print "[a line of " length(s) " bytes with a secret word: not collected by dockerdoctor]"
    next
  }
  if (match(low, T)) {  # TOML: authorization = ["Basic ..."], password = "..."
    head = substr(s, 1, RLENGTH - 1)
    tail = substr(s, RLENGTH)
    if (substr(tail, 1, 1) == "[" && !index(tail, "]")) arr = 1
    s = head qmask(tail)
  }
  s = rule(s, "://[^:/@ \t\"'<>]*:[^@/ \t\"'<>]+@", "^://[^:/@ \t\"'<>]*:", 1)
  s = rule(s, "authorization:[ \t]*(basic|bearer)[ \t]+[a-z0-9+/=._~-]+", "^authorization:[ \t]*(basic|bearer)[ \t]+")
  s = rule(s, N "=[^ \t\"',;[][^ \t\"',;]*", "^" N "=")
  s = rule(s, "-" N "[ \t]+[^- \t\"',;][^ \t\"',;]*", "^-" N "[ \t]+")
  # quoted values, up to the matching quote: NAME="a b", --password 'x', docker login -p "x"
  # (not in "NAME=", "next": a JSON string holding NAME= with an empty value)
  s = rule(s, "(^|[^\"a-z0-9_.-])" N "=\"[^\"]*\"", "^[^a-z0-9_.-]?" N "=\"", 1)
  s = rule(s, "(^|[^'a-z0-9_.-])" N "='[^']*'", "^[^a-z0-9_.-]?" N "='", 1)
  s = rule(s, "-" N "(=|[ \t]+)\"[^\"]*\"", "^-" N "(=|[ \t]+)\"", 1)
  s = rule(s, "-" N "(=|[ \t]+)'[^']*'", "^-" N "(=|[ \t]+)'", 1)
  if (index(low, "login")) {
    L = "(^|[^a-z0-9_.-])login[ \t]([^\n]*[ \t])?-p([ \t]+|=)"
    s = rule(s, L "[^- \t\"'][^ \t\"']*", "^.*[ \t]-p([ \t]+|=)")
    s = rule(s, L "\"[^\"]*\"", "^.*[ \t]-p([ \t]+|=)\"", 1)
    s = rule(s, L "'[^']*'", "^.*[ \t]-p([ \t]+|=)'", 1)
  }
  s = rule(s, "^[ \t]*" N "[ \t]*:[ \t]+\"[^\"]*\"", "^[ \t]*" N "[ \t]*:[ \t]+\"", 1)
  s = rule(s, "^[ \t]*" N "[ \t]*:[ \t]+'[^']*'", "^[ \t]*" N "[ \t]*:[ \t]+'", 1)
  s = rule(s, "\"" N "\"[ \t]*:[ \t]*\"[^\"]+", "^\"" N "\"[ \t]*:[ \t]*\"")
  if (match(tolower(s), "^[ \t]*" N "[ \t]*:[ \t]+[^ \t#\"'][^#]*")) s = rule(s, "^[ \t]*" N "[ \t]*:[ \t]+[^ \t#\"'][^#]*", "^[ \t]*" N "[ \t]*:[ \t]+")
  print s
}
END { if (map != "") close(map); if (n) print n > "/dev/stderr" }
