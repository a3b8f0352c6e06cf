#!/bin/bash
# A real S3 server for bkp's tests: a one-node Ceph cluster (monitor, in-memory OSD, RADOS
# Gateway) on 127.0.0.1, from Debian's packages (apt-get install radosgw ceph-mon ceph-osd).
#
#   test/support/ceph-s3-server.sh start STATE_DIR S3_PORT MON_PORT   → prints "ready" when it serves
#   test/support/ceph-s3-server.sh stop STATE_DIR
#
# Test credentials (not secrets, they exist only in this throwaway cluster): key bkptestkey,
# secret bkptestsecret. State lives in STATE_DIR only; the OSD keeps objects in memory.
set -euo pipefail
cmd=${1:?usage: ceph-s3-server.sh start|stop STATE_DIR [S3_PORT MON_PORT]}
D=${2:?state directory}

if [[ $cmd == stop ]]; then
  [[ -f $D/ceph.conf ]] || exit 0 # not a state directory of this script: touch nothing
  pids=$(cat "$D"/run/*.pid 2>/dev/null || true)
  [[ -n $pids ]] && kill $pids 2>/dev/null || true
  for _ in $(seq 1 50); do
    alive=0
    for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  [[ -n $pids ]] && kill -9 $pids 2>/dev/null || true
  rm -rf "$D"
  exit 0
fi

PORT=${3:?S3 port}
MON_PORT=${4:?monitor port}
for b in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph-authtool ceph; do
  command -v "$b" >/dev/null || { echo "ceph-s3-server: $b not installed (apt-get install radosgw ceph-mon ceph-osd)" >&2; exit 3; }
done
rm -rf "$D"
mkdir -p "$D"/{mon,osd,run,log,rgw}
FSID=$(cat /proc/sys/kernel/random/uuid)
cat >"$D/ceph.conf" <<CONF
[global]
fsid = $FSID
mon host = v1:127.0.0.1:$MON_PORT
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default pg num = 8
osd pool default pgp num = 8
mon max pg per osd = 1000
osd pool default pg autoscale mode = off
osd objectstore = memstore
memstore device bytes = 8589934592
osd crush chooseleaf type = 0
mon data = $D/mon/\$cluster-\$id
osd data = $D/osd/\$cluster-\$id
run dir = $D/run
admin socket = $D/run/\$name.asok
pid file = $D/run/\$name.pid
log file = $D/log/\$name.log
public addr = 127.0.0.1
ms bind ipv6 = false
ms bind msgr2 = false
ms mon client mode = crc
paxos propose interval = 0.05
paxos min wait = 0.01
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$PORT tcp_nodelay=1
rgw dns name = 127.0.0.1
rgw data = $D/rgw
CONF
export CEPH_CONF="$D/ceph.conf"
monmaptool --create --addv a "v1:127.0.0.1:$MON_PORT" --fsid "$FSID" "$D/monmap" >/dev/null
ceph-authtool --create-keyring "$D/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
mkdir -p "$D/mon/ceph-a"
ceph-mon -c "$CEPH_CONF" --mkfs -i a --monmap "$D/monmap" --keyring "$D/keyring"
ceph-mon -c "$CEPH_CONF" -i a
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
ID=$(ceph -c "$CEPH_CONF" osd create "$OSD_UUID")
mkdir -p "$D/osd/ceph-$ID"
ceph-osd -c "$CEPH_CONF" -i "$ID" --mkfs --osd-uuid "$OSD_UUID" 2>"$D/log/osd-mkfs.err"
ceph-osd -c "$CEPH_CONF" -i "$ID"
wait_for_rgw() {
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "ceph-s3-server: radosgw did not start (see $D/log)" >&2
  exit 1
}
radosgw -c "$CEPH_CONF" -n client.rgw.a
wait_for_rgw
# more storage classes, so that tests can put pack objects in classes of their own (here GLACIER
# is only a name: objects in it stay readable); the gateway reads placement at start, so it is
# restarted once
for class in STANDARD_IA GLACIER; do
  radosgw-admin -c "$CEPH_CONF" zonegroup placement add --rgw-zonegroup default --placement-id default-placement --storage-class "$class" >/dev/null
  radosgw-admin -c "$CEPH_CONF" zone placement add --rgw-zone default --placement-id default-placement --storage-class "$class" \
    --data-pool "default.rgw.${class,,}.data" >/dev/null
done
pid=$(cat "$D/run/client.rgw.a.pid")
kill "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
radosgw -c "$CEPH_CONF" -n client.rgw.a
wait_for_rgw
radosgw-admin -c "$CEPH_CONF" user create --uid=bkp --display-name=bkp --access-key=bkptestkey --secret=bkptestsecret >/dev/null
radosgw-admin -c "$CEPH_CONF" user create --uid=other --display-name=other --access-key=othertestkey --secret=othertestsecret >/dev/null
echo ready
