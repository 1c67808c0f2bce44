# No plain-text Secrets in Git: a Secret carrying `data` or `stringData` is denied. Commit a
# SealedSecret or an ExternalSecret instead. Messages never include a key or a value.
package pushgate.k8s.secrets

import data.pushgate.lib.k8s

deny contains {"msg": msg, "field": field} if {
	k8s.kind == "Secret"
	some field in ["data", "stringData"]
	non_empty(input[field])
	msg := concat("", [
		k8s.object_desc, " holds plain-text values in ", field,
		": commit a SealedSecret or an ExternalSecret instead, and rotate anything already pushed",
	])
}

non_empty(x) if {
	is_object(x)
	count(x) > 0
}

# Malformed (not a map) but still content: deny rather than let it through.
non_empty(x) if {
	is_string(x)
	x != ""
}

non_empty(x) if {
	is_array(x)
	count(x) > 0
}
