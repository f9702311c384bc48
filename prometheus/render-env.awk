# Render alertmanager.yml at start: each "${NAME}" or "${NAME:-default}" (the quotes are
# part of the placeholder) becomes a double-quoted YAML string holding the environment's
# value, or the default when NAME is unset or empty:
#   awk -f render-env.awk alertmanager.yml > /tmp/alertmanager.yml
# The value is escaped for a YAML double-quoted scalar (backslash, quote, every control
# character), so no value can end the string and add YAML of its own. A placeholder
# outside double quotes is left as it is, and Alertmanager refuses the file.
# POSIX awk only: compose runs it with the Alertmanager image's busybox awk.
BEGIN {
  for (i = 1; i < 32; i++) escaped[sprintf("%c", i)] = sprintf("\\x%02x", i)
  escaped["\n"] = "\\n"
  escaped["\t"] = "\\t"
  escaped["\r"] = "\\r"
  escaped[sprintf("%c", 127)] = "\\x7f"
  escaped["\\"] = "\\\\"
  escaped["\""] = "\\\""
}

function yaml_escape(s,    out, i, c) {
  out = ""
  for (i = 1; i <= length(s); i++) {
    c = substr(s, i, 1)
    out = out ((c in escaped) ? escaped[c] : c)
  }
  return out
}

{
  line = $0
  out = ""
  while (match(line, /"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}"]*)?\}"/)) {
    token = substr(line, RSTART + 3, RLENGTH - 5)
    name = token
    fallback = ""
    split_at = index(token, ":-")
    if (split_at > 0) {
      name = substr(token, 1, split_at - 1)
      fallback = substr(token, split_at + 2)
    }
    value = ((name in ENVIRON) && ENVIRON[name] != "") ? ENVIRON[name] : fallback
    out = out substr(line, 1, RSTART - 1) "\"" yaml_escape(value) "\""
    line = substr(line, RSTART + RLENGTH)
  }
  print out line
}
