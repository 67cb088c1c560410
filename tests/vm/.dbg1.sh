dmesg | grep -i -E 'iommufd|mock|DMAR|iommu' | head -20
lspci -nn
"$PY" -m pciauth auth 0000:00:05.0 --trust-anchor /work/main/tests/vm/.tmp-pki/ecdsa-p256/root.pem --json > /tmp/a.json; echo rc=$?
"$PY" -c "
import json; d=json.load(open('/tmp/a.json'))
print({k: d[k] for k in d if k not in ('slots','signatures','transcript','measurements')})
for c in d.get('checks') or []:
    if not c.get('ok'): print('CHECK', c)
for s in d.get('slots') or []: print('SLOT', s.get('slot'), s.get('verdict'))
"
