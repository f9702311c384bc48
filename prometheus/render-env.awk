# Replace ${NAME} and ${NAME:-default} in a file with the environment's value, or the
# default when NAME is unset or empty. Used to render alertmanager.yml at start:
#   awk -f render-env.awk alertmanager.yml > /tmp/alertmanager.yml
{
  line = $0
  out = ""
  while (match(line, /\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}/)) {
    token = substr(line, RSTART + 2, RLENGTH - 3)
    name = token
    fallback = ""
    split_at = index(token, ":-")
    if (split_at > 0) {
      name = substr(token, 1, split_at - 1)
      fallback = substr(token, split_at + 2)
    }
    value = ((name in ENVIRON) && ENVIRON[name] != "") ? ENVIRON[name] : fallback
    out = out substr(line, 1, RSTART - 1) value
    line = substr(line, RSTART + RLENGTH)
  }
  print out line
}
