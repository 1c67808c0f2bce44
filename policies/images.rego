# Images are pinned: no `:latest`, no untagged image, no malformed digest. Checks containers,
# initContainers and ephemeralContainers of every workload kind.
#
# A reference pinned by digest (`name@sha256:<64 hex>`) is fine whatever its tag. The tag is what
# follows the last `:` of the last path component, so `registry:5000/app` is untagged (5000 is a
# port) and `registry:5000/app:1.2` is tagged 1.2.
package pushgate.k8s.images

import data.pushgate.lib.k8s

deny contains {"msg": msg, "field": field} if {
	some c in k8s.container_refs
	image := image_of(k8s.container_at(c))
	not pinned_by_tag(image)
	why := problem(image)
	field := concat("", [k8s.container_field(c), ".image"])
	msg := concat("", [k8s.container_desc(c), " uses ", why])
}

# Most references: a version tag and no digest. Decided with one look at the tag; problem()
# decides the rest.
pinned_by_tag(image) if {
	not contains(image, "@")
	t := tag(image)
	t != ""
	t != "latest"
}

# What is wrong with an image reference, if anything (at most one of these holds).
problem(image) := concat("", ["image \"", k8s.safe(image), "\": pin a version tag or digest instead of latest"]) if {
	not contains(image, "@")
	tag(image) == "latest"
}

problem(image) := concat("", ["untagged image \"", k8s.safe(image), "\" (which means latest): pin a version tag or digest"]) if {
	not contains(image, "@")
	not tagged(image)
}

problem(image) := concat("", ["image \"", k8s.safe(image), "\" with a malformed digest: pin a version tag or a full @sha256:<64 hex> digest"]) if {
	contains(image, "@")
	not valid_digest(image)
}

image_of(container) := image if {
	image := container.image
	is_string(image)
	image != ""
}

# The last path component: `app:1.2` in `registry:5000/team/app:1.2`.
last_component(image) := parts[count(parts) - 1] if {
	parts := split(image, "/")
}

# The tag of an image without a digest; undefined when there is none.
tag(image) := t if {
	last := last_component(image)
	i := indexof(last, ":")
	i >= 0
	t := substring(last, i + 1, -1)
}

tagged(image) if tag(image) != ""

valid_digest(image) if regex.match(`^[^@]+@sha256:[a-f0-9]{64}$`, image)

valid_digest(image) if regex.match(`^[^@]+@sha512:[a-f0-9]{128}$`, image)
