"""The shell scripts of replicated managed Redis (``spec.redis.managed.replicas`` > 0).

They run in the managed Redis image (``sh``, ``redis-server``, ``redis-cli``, ``timeout``)
and read their settings from the env the StatefulSets give them (builders.py):

``REDIS_NAME`` (``NAME-redis``), ``REDIS_DOMAIN`` (``NAME-redis.<namespace>.svc``: every
shard and Sentinel pod is ``<pod>.$REDIS_DOMAIN``), ``REDIS_REPLICAS``, ``REDIS_SHARDS``,
``SENTINEL_HOSTS`` (the Sentinel pods' names, space separated), ``SENTINEL_ADMIN`` (the
Sentinels' ACL user for everything but asking where a master is), ``SENTINEL_QUORUM``,
``SENTINEL_DOWN_AFTER_MS``, ``SENTINEL_FAILOVER_TIMEOUT_MS``, ``MIN_REPLICAS_TO_WRITE``,
``REDIS_PASSWORD`` and
``REDISCLI_AUTH`` (the app's generated password; redis-cli reads the latter itself).

Pod ``NAME-redis-<o>`` is member ``o % (replicas + 1)`` of shard ``o // (replicas + 1)``:
a shard's pods are consecutive, so a shard added or removed is pods added or removed at
the end, the rest untouched. Member 0 is the first master; from then on Sentinel decides.
"""

from __future__ import annotations

# ask NAME: the host the Sentinels name as NAME's master (the first that answers), or
# nothing. Sentinels' default user may run just this (and PING, ROLE, SUBSCRIBE).
_ASK = r"""
ask() {
  for s in $SENTINELS_TO_ASK; do
    a="$(timeout 3 redis-cli --no-auth-warning -h "$s" -p 26379 --raw \
      sentinel get-master-addr-by-name "$1" 2>/dev/null | head -n 1)" || a=""
    case "$a" in ""|*" "*) continue ;; esac
    echo "$a"
    return 0
  done
  return 1
}
"""

# A shard pod: ask the Sentinels for the shard's master and replicate it; when none knows
# one (the set's first start) member 0 is the master. A pod the Sentinels still name as the
# master has restarted with nothing (no persistence): it asks them to promote a replica
# first (SENTINEL FAILOVER: Sentinel promotes, nothing else does) and replicates that one,
# so a restart in place never serves an empty master to the shard's replicas and clients.
REDIS_START = (
    r"""set -eu
ordinal="${HOSTNAME##*-}"
members=$((REDIS_REPLICAS + 1))
shard=$((ordinal / members))
name="shard-$shard"
me="$HOSTNAME.$REDIS_DOMAIN"
SENTINELS_TO_ASK="$SENTINEL_HOSTS"
"""
    + _ASK
    + r"""
# replicas_known NAME: how many replicas of NAME the first Sentinel that answers has seen.
replicas_known() {
  for s in $SENTINEL_HOSTS; do
    n="$(timeout 3 redis-cli --no-auth-warning --user "$SENTINEL_ADMIN" -h "$s" -p 26379 \
      --raw sentinel master "$1" 2>/dev/null | grep -A 1 -x num-slaves | tail -n 1)" || n=""
    case "$n" in ""|*[!0-9]*) continue ;; esac
    echo "$n"
    return 0
  done
  echo 0
}

role=replica
master="$(ask "$name" || true)"
if [ -z "$master" ]; then
  if [ "$((ordinal % members))" -eq 0 ]; then
    role=master
  else
    master="$REDIS_NAME-$((shard * members)).$REDIS_DOMAIN"
  fi
elif [ "$master" = "$me" ] && [ "$(replicas_known "$name")" -eq 0 ]; then
  # Named the master of a shard no replica of which the Sentinels have seen: the set's
  # first start (the Sentinels' initial config names member 0).
  role=master
elif [ "$master" = "$me" ]; then
  echo "$name: restarted while the Sentinels name this pod its master: asking for a failover"
  requested=""
  for s in $SENTINEL_HOSTS; do
    answer="$(timeout 3 redis-cli --no-auth-warning --user "$SENTINEL_ADMIN" -h "$s" \
      -p 26379 sentinel failover "$name" 2>/dev/null)" || answer=""
    case "$answer" in OK*|*INPROG*) requested=yes; break ;; esac
  done
  i=0
  while [ -n "$requested" ] && [ "$master" = "$me" ] && [ "$i" -lt 30 ]; do
    sleep 1
    i=$((i + 1))
    master="$(ask "$name" || echo "$me")"
  done
  if [ "$master" = "$me" ]; then
    echo "$name: no replica was promoted: starting as its (empty) master"
    role=master
  fi
fi
set -- --port 6379 --requirepass "$REDIS_PASSWORD" --masterauth "$REDIS_PASSWORD" \
  --save "" --appendonly no --maxmemory-policy noeviction --dir /data \
  --replica-announce-ip "$me" --repl-diskless-load on-empty-db \
  --min-replicas-to-write "$MIN_REPLICAS_TO_WRITE"
if [ "$role" = replica ]; then
  echo "$name: starting as a replica of $master"
  set -- "$@" --replicaof "$master" 6379
else
  echo "$name: starting as its master"
fi
exec redis-server "$@"
"""
)

# Before a shard pod stops (deleted, evicted, rolled): a master hands over first. It fences
# writes (``min-replicas-to-write`` above any replica count: every write answers NOREPLICAS
# at once, certainly not run) and lets its replica catch up (replication is asynchronous: a
# write the replica has not received would be lost in the switch), asks the Sentinels for a
# failover and waits up to 10 s until they name the promoted replica, then turns itself into
# that one's replica. Clients send what was refused to the new master (+switch-master).
# A fence rather than ``CLIENT PAUSE``: a held write whose connection the switch cuts could
# have run or not, and the layer refuses it (at most once); a refused one is sent again.
REDIS_PRE_STOP = (
    r"""role="$(timeout 3 redis-cli --no-auth-warning -p 6379 role | head -n 1)" || exit 0
[ "$role" = master ] || exit 0
me="$HOSTNAME.$REDIS_DOMAIN"
name="shard-$((${HOSTNAME##*-} / (REDIS_REPLICAS + 1)))"
SENTINELS_TO_ASK="$SENTINEL_HOSTS"
"""
    + _ASK
    + r"""
fence() {
  timeout 3 redis-cli --no-auth-warning -p 6379 config set min-replicas-to-write "$1" >/dev/null 2>&1
}
resume() { fence "$MIN_REPLICAS_TO_WRITE"; }
fence 1000000 || true
i=0
while [ "$i" -lt 20 ]; do
  info="$(timeout 3 redis-cli --no-auth-warning -p 6379 info replication | tr -d '\r')" || break
  offset="$(echo "$info" | sed -n 's/^master_repl_offset://p')"
  case "$info" in *"offset=$offset,"*) break ;; esac
  sleep 0.1
  i=$((i + 1))
done
for s in $SENTINEL_HOSTS; do
  answer="$(timeout 3 redis-cli --no-auth-warning --user "$SENTINEL_ADMIN" -h "$s" \
    -p 26379 sentinel failover "$name" 2>/dev/null)" || answer=""
  case "$answer" in OK*) break ;; esac
done
i=0
while [ "$i" -lt 20 ]; do
  sleep 0.5
  master="$(ask "$name" || true)"
  if [ -n "$master" ] && [ "$master" != "$me" ]; then
    timeout 3 redis-cli --no-auth-warning -p 6379 replicaof "$master" 6379 >/dev/null 2>&1
    resume
    exit 0
  fi
  i=$((i + 1))
done
resume
"""
)

# Ready: a master, or a replica whose link to its master is up (a replica still syncing,
# or cut off from its master, could not take over without losing data).
REDIS_READY = r"""r="$(timeout 3 redis-cli --no-auth-warning -p 6379 info replication)" || exit 1
case "$r" in
  *role:master*|*master_link_status:up*) exit 0 ;;
esac
exit 1
"""

# A Sentinel pod: a fresh config each start, monitoring every shard at the master the
# other Sentinels know (member 0 of the shard when none does); hostnames resolved and
# announced (pod IPs change, names do not). The default user (no password) may only ask
# where a master is and hear switches; the admin user (the app's password) does the rest,
# and is what the Sentinels use with each other.
SENTINEL_START = (
    r"""set -eu
me="$HOSTNAME.$REDIS_DOMAIN"
SENTINELS_TO_ASK=""
for s in $SENTINEL_HOSTS; do
  [ "$s" = "$me" ] || SENTINELS_TO_ASK="$SENTINELS_TO_ASK $s"
done
"""
    + _ASK
    + r"""
conf=/sentinel/sentinel.conf
cat > "$conf.new" <<EOF
port 26379
dir /sentinel
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $me
user default on nopass resetchannels &+switch-master -@all +ping +role +subscribe +sentinel|get-master-addr-by-name
user $SENTINEL_ADMIN on >$REDIS_PASSWORD ~* &* +@all
sentinel sentinel-user $SENTINEL_ADMIN
sentinel sentinel-pass $REDIS_PASSWORD
EOF
shard=0
while [ "$shard" -lt "$REDIS_SHARDS" ]; do
  name="shard-$shard"
  master="$(ask "$name" || true)"
  [ -n "$master" ] || master="$REDIS_NAME-$((shard * (REDIS_REPLICAS + 1))).$REDIS_DOMAIN"
  # Sentinel refuses a config naming a host it cannot resolve: wait for the pod's name.
  i=0
  until getent hosts "$master" >/dev/null 2>&1 \
    || timeout 2 redis-cli --no-auth-warning -h "$master" -p 6379 ping >/dev/null 2>&1 \
    || [ "$i" -ge 120 ]; do
    sleep 1
    i=$((i + 1))
  done
  cat >> "$conf.new" <<EOF
sentinel monitor $name $master 6379 $SENTINEL_QUORUM
sentinel auth-pass $name $REDIS_PASSWORD
sentinel down-after-milliseconds $name $SENTINEL_DOWN_AFTER_MS
sentinel failover-timeout $name $SENTINEL_FAILOVER_TIMEOUT_MS
sentinel parallel-syncs $name 1
EOF
  shard=$((shard + 1))
done
mv "$conf.new" "$conf"
exec redis-server "$conf" --sentinel
"""
)

# Ready: this Sentinel can fail every shard over: it sees enough Sentinels to agree on a
# failover (SENTINEL CKQUORUM) and knows a replica to promote (it learns them from the
# master's INFO, every 10 s).
SENTINEL_READY = r"""shard=0
while [ "$shard" -lt "$REDIS_SHARDS" ]; do
  timeout 3 redis-cli --no-auth-warning --user "$SENTINEL_ADMIN" -p 26379 \
    sentinel ckquorum "shard-$shard" | grep -q '^OK' || exit 1
  n="$(timeout 3 redis-cli --no-auth-warning --user "$SENTINEL_ADMIN" -p 26379 --raw \
    sentinel master "shard-$shard" | grep -A 1 -x num-slaves | tail -n 1)" || exit 1
  case "$n" in ""|0|*[!0-9]*) exit 1 ;; esac
  shard=$((shard + 1))
done
"""
