# marks the template as package data; not copied into projects
