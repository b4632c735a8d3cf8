"""Bash script bodies. Each runs after the generated preamble, which sets the parameter variables (upper-case
parameter names), APPLY (0 or 1) and ``act`` (runs a command when applying, prints it otherwise).

Written for Linux with procps, coreutils and util-linux. Pipelines that may stop early read all their input
(awk 'NR <= n' rather than head) so that ``set -o pipefail`` never trips on SIGPIPE.
"""

from __future__ import annotations

CPU_HIGH = r"""
# pid and CPU ticks (utime + stime) of every process. The command name is cut first: it may hold spaces.
cpu_ticks() {
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | sed 's/^\([0-9]*\) .*) /\1 /' | awk '{ print $1, $13 + $14 }'
}

echo "Load average (1, 5, 15 min): $(cut -d ' ' -f 1-3 /proc/loadavg)   CPUs: $(nproc)"
hz=$(getconf CLK_TCK)
before=$(cpu_ticks)
sleep 1
after=$(cpu_ticks)
# pid and CPU percent of one core over the last second, busiest first.
usage=$(awk -v hz="$hz" 'NR == FNR { t[$1] = $2; next } ($1 in t) { printf "%s %.1f\n", $1, ($2 - t[$1]) * 100 / hz }' \
  <(printf '%s\n' "$before") <(printf '%s\n' "$after") | sort -k 2 -rn)

echo
echo "Top $TOP processes by CPU over the last second:"
printf '%8s %6s %4s %-12s %s\n' PID CPU% NI USER COMMAND
while read -r pid cpu; do
  info=$(ps -o ni=,user=,comm= -p "$pid" || true)
  if [[ -n "$info" ]]; then
    printf '%8s %6s %s\n' "$pid" "$cpu" "$info"
  fi
done < <(printf '%s\n' "$usage" | awk -v n="$TOP" 'NF == 2 && NR <= n')
echo

renice_pid() {
  local target=$1 current
  if [[ "$target" == 1 || "$target" == "$$" ]]; then
    echo "PID $target: refusing to renice init or this script"
    return 0
  fi
  current=$(ps -o ni= -p "$target" | tr -d ' ' || true)
  if [[ -z "$current" ]]; then
    echo "PID $target is not running; skipping"
  elif [[ "$current" =~ ^-?[0-9]+$ ]] && ((current >= NICE_LEVEL)); then
    echo "PID $target ($(ps -o comm= -p "$target" || true)) already has niceness $current; leaving it"
  else
    echo "PID $target ($(ps -o comm= -p "$target" || true)): niceness $current -> $NICE_LEVEL"
    act renice -n "$NICE_LEVEL" -p "$target" || echo "could not renice PID $target (root is needed for other users)" >&2
  fi
}

if [[ -n "$PID" ]]; then
  renice_pid "$PID"
else
  mapfile -t offenders < <(printf '%s\n' "$usage" \
    | awk -v t="$THRESHOLD_PERCENT" -v n="$TOP" 'NF == 2 && NR <= n && $2 + 0 > t + 0 { print $1 }')
  if ((${#offenders[@]} == 0)); then
    echo "No process is above ${THRESHOLD_PERCENT}% CPU: nothing to renice."
  else
    echo "Processes above ${THRESHOLD_PERCENT}% CPU (renice to $NICE_LEVEL):"
    for target in "${offenders[@]}"; do
      renice_pid "$target"
    done
  fi
fi
"""

MEMORY_HIGH = r"""
echo "Memory and swap:"
free -h
if [[ -r /proc/pressure/memory ]]; then
  echo
  echo "Memory pressure (share of time tasks stalled waiting for memory):"
  cat /proc/pressure/memory
fi

echo
echo "Top $TOP processes by resident memory:"
printf '%8s %-12s %12s %6s %s\n' PID USER RSS MEM% COMMAND
ps -eo pid=,user=,rss=,pmem=,comm= --sort=-rss \
  | awk -v n="$TOP" 'NR <= n { printf "%8s %-12s %8.1f MiB %5s%% %s\n", $1, $2, $3 / 1024, $4, $5 }'

echo
echo "Recent out-of-memory kills (kernel log, last 24 h):"
oom=$(journalctl -k --since -24h --no-pager -q 2>/dev/null \
  | grep -iE 'out of memory|oom-kill|killed process' | tail -n 5 || true)
echo "${oom:-none found (or the kernel log is not readable without root)}"

if [[ -n "$RESTART_SERVICE" ]]; then
  echo
  if command -v systemctl >/dev/null 2>&1; then
    memory=$(systemctl show -p MemoryCurrent --value -- "$RESTART_SERVICE" 2>/dev/null || true)
    echo "Service $RESTART_SERVICE uses ${memory:-an unknown amount of} bytes; restarting it frees that memory."
    act systemctl restart -- "$RESTART_SERVICE"
  else
    echo "systemctl not found: restart $RESTART_SERVICE with your init system's tools" >&2
  fi
fi

if [[ "$DROP_CACHES" == yes ]]; then
  echo
  echo "Dropping the page cache frees clean cached file data only; it rarely cures real memory pressure."
  act sync
  act sysctl -w vm.drop_caches=1
fi
"""

DISK_FULL = r"""
echo "File systems:"
df -h -x tmpfs -x devtmpfs -x squashfs -x overlay 2>/dev/null || df -h
echo
echo "Inodes on $SCAN_PATH:"
df -i -- "$SCAN_PATH"

echo
echo "Largest folders under $SCAN_PATH (this file system only; may take a while):"
{ du -xh --max-depth=2 -- "$SCAN_PATH" 2>/dev/null || true; } | sort -rh | awk -v n="$TOP" 'NR <= n'

if [[ -n "$CLEAN_DIR" ]]; then
  echo
  if [[ ! -d "$CLEAN_DIR" ]]; then
    echo "clean_dir $CLEAN_DIR is not a folder: skipping the clean-up" >&2
  else
    old=$({ find "$CLEAN_DIR" -xdev -type f -mtime +"$OLDER_THAN_DAYS" -printf '%s\n' 2>/dev/null || true; } \
      | awk '{ n++; s += $1 } END { printf "%d file(s), %.1f MiB", n, s / 1048576 }')
    echo "Files in $CLEAN_DIR last modified more than $OLDER_THAN_DAYS days ago: $old"
    { find "$CLEAN_DIR" -xdev -type f -mtime +"$OLDER_THAN_DAYS" -print 2>/dev/null || true; } | awk 'NR <= 20'
    # find never follows symbolic links here, and -xdev keeps it on this file system.
    act find "$CLEAN_DIR" -xdev -type f -mtime +"$OLDER_THAN_DAYS" -delete
  fi
fi

if [[ -n "$JOURNAL_MAX_SIZE" ]]; then
  echo
  if command -v journalctl >/dev/null 2>&1; then
    journalctl --disk-usage 2>/dev/null || true
    act journalctl --vacuum-size="$JOURNAL_MAX_SIZE"
  else
    echo "journalctl not found: no systemd journal to vacuum" >&2
  fi
fi

echo
echo "Other usual suspects: package caches (apt-get clean, dnf clean all), container images (docker system df)."
"""

PROCESS_MEMORY_HIGH = r"""
# Size with unit K, M, G or T to KiB, the unit ps reports RSS in.
to_kib() {
  local number=${1%?}
  case ${1: -1} in
    K) echo "$number" ;;
    M) echo $((number * 1024)) ;;
    G) echo $((number * 1024 * 1024)) ;;
    T) echo $((number * 1024 * 1024 * 1024)) ;;
  esac
}

# True while the process exists and is not a zombie (a zombie has already released its memory).
alive() {
  local state
  state=$(ps -o stat= -p "$1" || true)
  [[ -n "$state" && "$state" != Z* ]]
}

limit_kib=$(to_kib "$MAX_RSS")
if [[ "$PID" == 1 || "$PID" == "$$" ]]; then
  echo "PID $PID is init or this script: refusing to act on it" >&2
  exit 1
fi
if ! alive "$PID"; then
  echo "PID $PID is not running: nothing to do."
  exit 0
fi

echo "Process $PID:"
ps -o pid,ppid,user,etime,rss,vsz,pmem,comm -p "$PID" || true
echo "Command line: $(tr '\0' ' ' <"/proc/$PID/cmdline" 2>/dev/null || echo unknown)"
grep -E '^(VmRSS|VmHWM|VmSwap|Threads):' "/proc/$PID/status" 2>/dev/null || true

rss_kib=$(ps -o rss= -p "$PID" | tr -d ' ' || true)
if [[ -z "$rss_kib" ]]; then
  echo "PID $PID has exited: nothing to do."
  exit 0
fi
if ((rss_kib <= limit_kib)); then
  echo "Resident memory $rss_kib KiB is within the limit $MAX_RSS ($limit_kib KiB): nothing to do."
  exit 0
fi

echo "Resident memory $rss_kib KiB exceeds the limit $MAX_RSS ($limit_kib KiB)."
act kill -TERM "$PID"
if ((APPLY)); then
  for _ in $(seq "$GRACE_SECONDS"); do
    if ! alive "$PID"; then
      echo "PID $PID exited."
      exit 0
    fi
    sleep 1
  done
  echo "PID $PID is still running after $GRACE_SECONDS s."
  act kill -KILL "$PID"
else
  echo "(and kill -KILL $PID if it is still running $GRACE_SECONDS s later)"
fi
"""

SERVICE_RESTART = r"""
if ! command -v systemctl >/dev/null 2>&1; then
  echo "systemctl not found: this script needs systemd" >&2
  exit 1
fi
if ! systemctl cat -- "$SERVICE" >/dev/null 2>&1; then
  echo "unit $SERVICE not found (systemctl list-units --type=service lists them)" >&2
  exit 1
fi

echo "State of $SERVICE: $(systemctl is-active -- "$SERVICE" || true)"
systemctl status --no-pager --lines=0 -- "$SERVICE" || true
if ((LOG_LINES > 0)); then
  echo
  echo "Last $LOG_LINES journal lines:"
  journalctl -u "$SERVICE" -n "$LOG_LINES" --no-pager 2>/dev/null || echo "(journal not readable)"
fi

echo
act systemctl restart -- "$SERVICE"
if ((APPLY)); then
  sleep 2
  state=$(systemctl is-active -- "$SERVICE" || true)
  echo "State after the restart: $state"
  if [[ "$state" != active ]]; then
    echo "$SERVICE is not active after the restart; read journalctl -u $SERVICE" >&2
    exit 1
  fi
fi
"""

DISK_HEALTH = r"""
echo "Space on $SCAN_PATH:"
df -h -- "$SCAN_PATH"
used=$(df -P -- "$SCAN_PATH" | awk 'NR == 2 { sub("%", "", $5); print $5 }')
if [[ "$used" =~ ^[0-9]+$ ]] && ((100 - used < MIN_FREE_PERCENT)); then
  echo "WARNING: only $((100 - used))% free on $SCAN_PATH (below $MIN_FREE_PERCENT%)"
else
  echo "OK: free space is at least $MIN_FREE_PERCENT%"
fi

echo
echo "Inodes on $SCAN_PATH:"
df -i -- "$SCAN_PATH"
inodes=$(df -Pi -- "$SCAN_PATH" | awk 'NR == 2 { sub("%", "", $5); print $5 }')
if [[ "$inodes" =~ ^[0-9]+$ ]] && ((100 - inodes < MIN_FREE_PERCENT)); then
  echo "WARNING: only $((100 - inodes))% of inodes free on $SCAN_PATH"
fi

echo
echo "Block devices:"
lsblk -o NAME,SIZE,TYPE,ROTA,MOUNTPOINT,MODEL 2>/dev/null || echo "(lsblk not available)"

echo
echo "Kernel I/O errors (last 7 days):"
errors=$({ journalctl -k -p err --since -7d --no-pager -q 2>/dev/null || dmesg --level=err 2>/dev/null || true; } \
  | grep -iE 'I/O error|blk_update_request|medium error|EXT4-fs error|XFS .*error|nvme.*(timeout|error)' \
  | awk 'NR <= 20' || true)
echo "${errors:-none found (or the kernel log is not readable without root)}"

echo
if command -v smartctl >/dev/null 2>&1; then
  if [[ -n "$DEVICE" ]]; then
    devices=("$DEVICE")
  else
    mapfile -t devices < <(smartctl --scan 2>/dev/null | awk '{ print $1 }')
  fi
  if ((${#devices[@]} == 0)); then
    echo "smartctl found no disks (root is usually needed)."
  else
    for device in "${devices[@]}"; do
      echo "SMART health of $device:"
      smartctl -H -A "$device" || echo "smartctl reported a problem or could not read $device (exit $?)"
    done
  fi
else
  echo "smartctl not found: install smartmontools for SMART health data."
fi

if [[ -n "$DEVICE" ]] && command -v smartctl >/dev/null 2>&1; then
  echo
  act smartctl -t short "$DEVICE"
fi
"""

BASH_BODIES: dict[str, str] = {
    "cpu_high": CPU_HIGH,
    "memory_high": MEMORY_HIGH,
    "disk_full": DISK_FULL,
    "process_memory_high": PROCESS_MEMORY_HIGH,
    "service_restart": SERVICE_RESTART,
    "disk_health": DISK_HEALTH,
}
