# Summarise an OpenSC pkcs11-spy log (0.23 format) for t_chromium.sh: one
# line per call that matters, fields separated by spaces, hex in lower case.
#   login USERTYPE RV
#   found SESSION CLASS ID HANDLE...   C_FindObjects after a C_FindObjectsInit
#                                      whose template has CKA_CLASS and CKA_ID
#   signinit SESSION MECH HASHALG MGF SLEN HKEY RV   (HASHALG MGF SLEN: "-"
#                                      unless PSS parameters were given)
#   sign SESSION RV DATAHEX SIGHEX     ("-" for a buffer not logged)
# A call is a block that starts with "N: C_Name" and ends with "Returned:".
function flush_dump() {
    if (dump == "data") data = data hex
    else if (dump == "sig") sig = sig hex
    else if (dump == "id") id = id hex
    dump = ""; hex = ""
}
/^[0-9]+: C_[A-Za-z]+$/ {
    flush_dump()
    fn = $2; sess = "-"; cls = "-"; id = ""; mech = "-"; hash = "-"; mgf = "-"; slen = "-"
    key = "-"; utype = "-"; data = ""; sig = ""; handles = ""
    next
}
# A hex dump line (mawk: no {n}): 4 spaces, 8-digit offset, 2 spaces, up to 16 "XX " groups.
dump != "" && /^    [0-9A-Fa-f]+  / {
    n = split(substr($0, 15, 48), b, " ")
    for (i = 1; i <= n; i++) if (b[i] ~ /^[0-9A-Fa-f][0-9A-Fa-f]$/) hex = hex tolower(b[i])
    next
}
{ flush_dump() }
/^\[in\] hSession = / { sess = $4 }
/^\[in\] userType = / { utype = $4 }
/^\[in\] hKey = / { key = $4 }
/^\[in\] pMechanism->type = / { mech = $4 }
/^\[in\] pMechanism->pParameter->hashAlg = / { hash = $4 }
/^\[in\] pMechanism->pParameter->mgf = / { mgf = $4 }
/^\[in\] pMechanism->pParameter->sLen = / { slen = $4 }
/^    CKA_CLASS / && fn == "C_FindObjectsInit" { cls = $2 }
/^    CKA_ID / && fn == "C_FindObjectsInit" { dump = "id" }
/^\[in\] pData\[ulDataLen\]/ && fn == "C_Sign" { dump = "data" }
/^\[out\] pSignature\[\*pulSignatureLen\]/ && fn == "C_Sign" { dump = "sig" }
/^Object 0x[0-9a-f]+ matches/ { handles = handles " " $2 }
/^Returned: / {
    rv = $3
    if (fn == "C_Login") print "login", utype, rv
    else if (fn == "C_FindObjectsInit" && rv == "CKR_OK") { fcls[sess] = cls; fid[sess] = id }
    else if (fn == "C_FindObjects" && (sess in fcls) && fcls[sess] != "-" && fid[sess] != "")
        print "found", sess, fcls[sess], fid[sess] handles
    else if (fn == "C_FindObjectsFinal") delete fcls[sess]
    else if (fn == "C_SignInit") print "signinit", sess, mech, hash, mgf, slen, key, rv
    else if (fn == "C_Sign")
        print "sign", sess, rv, (data == "" ? "-" : data), (sig == "" ? "-" : sig)
    fn = ""
}
