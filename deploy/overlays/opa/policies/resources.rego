# Every container and init container sets CPU and memory requests and limits (ephemeral
# containers cannot have resources). One denial per container, naming everything it lacks.
package pushgate.k8s.resources

import data.pushgate.lib.k8s

# The settings every container needs, in the order messages list them.
required := [
	["requests", "cpu"],
	["requests", "memory"],
	["limits", "cpu"],
	["limits", "memory"],
]

deny contains {"msg": msg, "field": field} if {
	some c in k8s.containers
	missing := [concat(".", path) | some path in required; not is_set(c.container, path)]
	count(missing) > 0
	field := concat("", [c.field, ".resources"])
	msg := concat("", [
		c.desc, " does not set resources.", concat(", resources.", missing),
		": set CPU and memory requests and limits",
	])
}

# A quantity is set when it is a non-empty string or a number (`cpu: 1`).
is_set(container, path) if {
	value := object.get(container, array.concat(["resources"], path), null)
	is_string(value)
	value != ""
}

is_set(container, path) if {
	value := object.get(container, array.concat(["resources"], path), null)
	is_number(value)
}
