# What the benchmark scripts share (source it): GNU time and the readers of its
# `time -v` reports.

# Installs GNU time (/usr/bin/time -v) when missing. $1 names the caller.
bench_need_gnu_time() {
  [ -x /usr/bin/time ] && return 0
  echo "$1: installing GNU time (/usr/bin/time -v)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq time >/dev/null; else sudo apt-get install -y -qq time >/dev/null; fi
}

# Wall seconds from a `time -v` report.
wall() { awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$1"; }
# Peak RSS in kB from a `time -v` report.
rss() { awk -F': ' '/Maximum resident set size/ { print $2 }' "$1"; }
# Peak RSS in MB, one decimal.
rss_mb() { awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$1"; }
