# Summarise an OpenSC pkcs11-spy log (0.23 format) for t_chromium.sh: one
# line per call that matters, fields separated by spaces, hex in lower case.
#   login USERTYPE RV PINLEN           (PINLEN: ulPinLen, "-" if not logged)
#   logout SESSION RV
#   opensession SLOT FLAGS RV SESSION
#   sessinfo SESSION SLOT STATE RV     C_GetSessionInfo (STATE: CKS_...)
#   tokeninfo SLOT LABEL RV FLAG,FLAG,...   C_GetTokenInfo (label trimmed)
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
    pinlen = "-"; slot = "-"; oflags = "-"; state = "-"; label = "-"; tflags = ""; inflags = 0
    phs = "-"
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
/^\[in\] slotID = / { slot = $4 }
/^\[in\] flags = / && fn == "C_OpenSession" { oflags = $4 }
/^\[out\] \*phSession = / { phs = $4 }
/^\[in\] pPin\[ulPinLen\] / && fn == "C_Login" { pinlen = $NF }
/^      slotID: / && fn == "C_GetSessionInfo" { slot = $2 }
/^      state: / && fn == "C_GetSessionInfo" { if (match($0, /CKS_[A-Z_]+/)) state = substr($0, RSTART, RLENGTH) }
/^      label: / && fn == "C_GetTokenInfo" {
    label = $0; sub(/^[^\047]*\047/, "", label); sub(/ *\047 *$/, "", label); gsub(/ /, "_", label)
    if (label == "") label = "-"
}
/^      flags: / && fn == "C_GetTokenInfo" { inflags = 1; next }
inflags && /^        CKF_/ { tflags = tflags (tflags == "" ? "" : ",") $1; next }
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
    if (fn == "C_Login") print "login", utype, rv, pinlen
    else if (fn == "C_Logout") print "logout", sess, rv
    else if (fn == "C_OpenSession") print "opensession", slot, oflags, rv, phs
    else if (fn == "C_GetSessionInfo") print "sessinfo", sess, slot, state, rv
    else if (fn == "C_GetTokenInfo") print "tokeninfo", slot, label, rv, (tflags == "" ? "-" : tflags)
    else if (fn == "C_FindObjectsInit" && rv == "CKR_OK") { fcls[sess] = cls; fid[sess] = id }
    else if (fn == "C_FindObjects" && (sess in fcls) && fcls[sess] != "-" && fid[sess] != "")
        print "found", sess, fcls[sess], fid[sess] handles
    else if (fn == "C_FindObjectsFinal") delete fcls[sess]
    else if (fn == "C_SignInit") print "signinit", sess, mech, hash, mgf, slen, key, rv
    else if (fn == "C_Sign")
        print "sign", sess, rv, (data == "" ? "-" : data), (sig == "" ? "-" : sig)
    fn = ""
}
