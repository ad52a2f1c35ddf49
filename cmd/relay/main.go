// Command relay delivers a CMS's outbox events as signed webhooks. See README.md.
package main

import "github.com/relayhq/relay/relay"

func main() { relay.Main() }
