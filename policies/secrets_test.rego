package pushgate.k8s.secrets_test

import data.pushgate.k8s.secrets
import data.pushgate.test.fixtures

secret(extra) := object.union({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"}, "type": "Opaque"}, extra)

data_msg := "Secret \"db\" holds plain-text values in data: commit a SealedSecret or an ExternalSecret instead, and rotate anything already pushed"

string_data_msg := "Secret \"db\" holds plain-text values in stringData: commit a SealedSecret or an ExternalSecret instead, and rotate anything already pushed"

test_clean_objects_pass if {
	every obj in fixtures.clean_objects {
		count(secrets.deny) == 0 with input as obj
	}
}

test_empty_secrets_pass if {
	every extra in [{}, {"data": {}}, {"stringData": {}}, {"data": null, "stringData": null}, {"data": ""}, {"data": []}] {
		count(secrets.deny) == 0 with input as secret(extra)
	}
}

test_data_denied if {
	denials := secrets.deny with input as secret({"data": {"password": "aHVudGVyMg=="}})
	fixtures.msgs(denials) == {data_msg}
	{d.field | some d in denials} == {"data"}
}

test_string_data_denied if {
	denials := secrets.deny with input as secret({"stringData": {"password": "hunter2"}})
	fixtures.msgs(denials) == {string_data_msg}
	{d.field | some d in denials} == {"stringData"}
}

test_data_and_string_data_both_reported if {
	fixtures.msgs(secrets.deny) == {data_msg, string_data_msg} with input as secret({"data": {"a": "Yg=="}, "stringData": {"c": "d"}})
}

test_malformed_non_empty_data_denied if {
	count(secrets.deny) == 1 with input as secret({"data": "cGFzc3dvcmQ="})
	count(secrets.deny) == 1 with input as secret({"stringData": ["hunter2"]})
}

test_unnamed_secret_denied if {
	fixtures.msgs(secrets.deny) == {"Secret holds plain-text values in stringData: commit a SealedSecret or an ExternalSecret instead, and rotate anything already pushed"} with input as {"kind": "Secret", "stringData": {"k": "v"}}
}

test_messages_never_leak_keys_or_values if {
	s := secret({
		"data": {"db-password-key": "c3VwZXJzZWNyZXQ="},
		"stringData": {"api-token-key": "supersecret-token"},
	})
	denials := secrets.deny with input as s
	count(denials) == 2
	every d in denials {
		every needle in ["db-password-key", "c3VwZXJzZWNyZXQ=", "api-token-key", "supersecret-token", "supersecret"] {
			not contains(json.marshal(d), needle)
		}
	}
}

test_other_kinds_with_data_pass if {
	count(secrets.deny) == 0 with input as fixtures.config_map
	count(secrets.deny) == 0 with input as {"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret", "metadata": {"name": "db"}, "spec": {"encryptedData": {"password": "AgBy..."}}}
}
