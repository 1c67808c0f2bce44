package pushgate.k8s.images_test

import data.pushgate.k8s.images
import data.pushgate.test.fixtures

hex64 := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

digest := concat(":", ["sha256", hex64])

# The denials for a Deployment whose one container uses `image`.
deny_image(image) := denials if {
	denials := images.deny with input as fixtures.deployment(fixtures.pod_spec([fixtures.container_with("web", image)]))
}

test_clean_objects_pass if {
	every obj in fixtures.clean_objects {
		count(images.deny) == 0 with input as obj
	}
}

test_version_tags_pass if {
	every image in [
		"nginx:1.27.3",
		"library/nginx:1.27",
		"docker.io/library/nginx:1.27-alpine",
		"registry:5000/app:1.2",
		"registry.example.com:5000/team/app:v2",
		"ghcr.io/org/app:latest-2024",
		"nginx:Latest",
		"localhost/app:0",
	] {
		count(deny_image(image)) == 0
	}
}

test_digests_pass if {
	every image in [
		concat("@", ["nginx", digest]),
		concat("@", ["nginx:latest", digest]),
		concat("@", ["registry:5000/app", digest]),
		concat("", ["nginx@sha512:", hex64, hex64]),
	] {
		count(deny_image(image)) == 0
	}
}

test_latest_denied if {
	fixtures.msgs(deny_image("nginx:latest")) == {"container \"web\" uses image \"nginx:latest\": pin a version tag or digest instead of latest"}
}

test_latest_with_registry_port_denied if {
	fixtures.msgs(deny_image("registry:5000/team/app:latest")) == {"container \"web\" uses image \"registry:5000/team/app:latest\": pin a version tag or digest instead of latest"}
}

test_untagged_denied if {
	fixtures.msgs(deny_image("nginx")) == {"container \"web\" uses untagged image \"nginx\" (which means latest): pin a version tag or digest"}
}

test_registry_port_without_tag_is_untagged if {
	fixtures.msgs(deny_image("registry:5000/app")) == {"container \"web\" uses untagged image \"registry:5000/app\" (which means latest): pin a version tag or digest"}
}

test_empty_tag_is_untagged if {
	count(deny_image("nginx:")) == 1
	count(deny_image("registry.example.com/team/app")) == 1
}

test_malformed_digest_denied if {
	fixtures.msgs(deny_image("nginx@sha256:abc")) == {"container \"web\" uses image \"nginx@sha256:abc\" with a malformed digest: pin a version tag or a full @sha256:<64 hex> digest"}
	count(deny_image("nginx@latest")) == 1
	count(deny_image(concat("", ["@", digest]))) == 1
	count(deny_image(concat("@", ["nginx@x", digest]))) == 1
}

test_denial_field if {
	[d] := [d | some d in deny_image("nginx:latest")]
	d.field == "spec.template.spec.containers[0].image"
}

test_init_and_ephemeral_containers_checked if {
	spec := {
		"initContainers": [fixtures.container_with("migrate", "flyway")],
		"containers": [fixtures.container("web")],
		"ephemeralContainers": [{"name": "debug", "image": "busybox:latest"}],
	}
	denials := images.deny with input as fixtures.workload("Pod", spec)
	fixtures.msgs(denials) == {
		"init container \"migrate\" uses untagged image \"flyway\" (which means latest): pin a version tag or digest",
		"ephemeral container \"debug\" uses image \"busybox:latest\": pin a version tag or digest instead of latest",
	}
	{d.field | some d in denials} == {"spec.initContainers[0].image", "spec.ephemeralContainers[0].image"}
}

test_every_workload_kind_checked if {
	spec := fixtures.pod_spec([fixtures.container_with("web", "nginx:latest")])
	found := {kind |
		some kind in fixtures.pod_kinds
		count(images.deny) == 1 with input as fixtures.workload(kind, spec)
	}
	found == fixtures.pod_kinds
}

test_cronjob_field_path if {
	spec := fixtures.pod_spec([fixtures.container_with("web", "nginx")])
	{d.field | some d in images.deny} == {"spec.jobTemplate.spec.template.spec.containers[0].image"} with input as fixtures.workload("CronJob", spec)
}

test_each_bad_container_reported if {
	spec := fixtures.pod_spec([
		fixtures.container_with("a", "nginx:latest"),
		fixtures.container_with("b", "nginx:1.27"),
		fixtures.container_with("c", "redis"),
	])
	count(images.deny) == 2 with input as fixtures.deployment(spec)
}

test_missing_or_odd_image_ignored if {
	spec := fixtures.pod_spec([{"name": "a"}, {"name": "b", "image": ""}, {"name": "c", "image": 7}])
	count(images.deny) == 0 with input as fixtures.deployment(spec)
}

test_non_workload_with_image_field_ignored if {
	obj := {"apiVersion": "v1", "kind": "ConfigMap", "metadata": fixtures.meta, "spec": {"containers": [{"name": "x", "image": "nginx:latest"}]}}
	count(images.deny) == 0 with input as obj
}
