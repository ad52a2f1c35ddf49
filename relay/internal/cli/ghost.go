package cli

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/relayhq/relay/relay/internal/ghostadmin"
	"github.com/relayhq/relay/relay/internal/ghostsite"
)

// GhostCmd connects unmodified Ghost sites to the relay.
type GhostCmd struct {
	Connect    GhostConnectCmd    `cmd:"" help:"Make a Ghost site send its webhooks to the relay (idempotent)."`
	Status     GhostStatusCmd     `cmd:"" help:"Show connected Ghost sites and what the relay last received from each."`
	Disconnect GhostDisconnectCmd `cmd:"" help:"Delete on the Ghost site the webhooks connect created, and forget the site."`
}

type GhostConnectCmd struct {
	SiteURL string `name:"site-url" required:"" help:"The Ghost site's URL (its url setting), e.g. https://blog.example.com."`
	// The key is a secret: prefer the environment variable, which no process list shows.
	AdminKey string   `name:"admin-key" env:"GHOST_ADMIN_API_KEY" required:"" help:"The site's custom-integration Admin API key, id:secret (or GHOST_ADMIN_API_KEY)."`
	RelayURL string   `name:"relay-url" required:"" help:"The relay's base URL as Ghost reaches it, e.g. https://relay.example.com."`
	Events   []string `name:"events" sep:"," help:"Events to forward (default: all of Ghost's events)."`
	JSON     bool     `name:"json" help:"Print JSON."`
}

// ghostHTTP is the client for a site's Admin API: the operator names the site, so no
// SSRF guard, but a bound on every call.
func ghostHTTP(siteURL, key string) (*ghostadmin.Client, error) {
	return ghostadmin.New(siteURL, key, &http.Client{Timeout: 15 * time.Second})
}

func (c *GhostConnectCmd) Run(ctx context.Context, g *Globals) error {
	return withGhostSites(ctx, g, func(st *ghostsite.Store) error {
		res, err := st.Connect(ctx, ghostsite.ConnectInput{SiteURL: c.SiteURL, AdminKey: c.AdminKey, RelayURL: c.RelayURL, Events: c.Events}, ghostHTTP)
		if err != nil {
			return err
		}
		if c.JSON {
			return printJSON(res)
		}
		fmt.Printf("connected Ghost site %s (%s): %d event(s) go to %s/ghost/in/%s/…\n",
			res.Site.ID, res.Site.URL, len(res.Site.Events), res.Site.RelayURL, res.Site.ID)
		for _, part := range []struct {
			what   string
			events []string
		}{{"created", res.Created}, {"re-created (deleted in Ghost)", res.Recreated}, {"checked and set again", res.Updated}, {"removed", res.Removed}} {
			if len(part.events) > 0 {
				fmt.Printf("  %s: %d (%s)\n", part.what, len(part.events), strings.Join(part.events, ", "))
			}
		}
		return nil
	})
}

type GhostStatusCmd struct {
	JSON bool `name:"json" help:"Print JSON."`
}

func (c *GhostStatusCmd) Run(ctx context.Context, g *Globals) error {
	return withGhostSites(ctx, g, func(st *ghostsite.Store) error {
		sites, err := st.List(ctx)
		if err != nil {
			return err
		}
		if c.JSON {
			if sites == nil {
				sites = []ghostsite.Site{}
			}
			return printJSON(sites)
		}
		if len(sites) == 0 {
			fmt.Println("no Ghost site is connected (relay ghost connect --help)")
			return nil
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SITE\tURL\tEVENTS\tWEBHOOKS\tRECEIVED\tLAST RECEIVED\tLAST EVENT")
		for _, s := range sites {
			last, event := "-", "-"
			if s.LastReceivedAt != nil {
				last = s.LastReceivedAt.UTC().Format(time.RFC3339)
			}
			if s.LastReceivedEvent != nil {
				event = *s.LastReceivedEvent
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\n", s.ID, s.URL, len(s.Events), len(s.Webhooks), s.ReceivedCount, last, event)
		}
		return tw.Flush()
	})
}

type GhostDisconnectCmd struct {
	Site string `name:"site" required:"" help:"Site id (relay ghost status)."`
}

func (c *GhostDisconnectCmd) Run(ctx context.Context, g *Globals) error {
	return withGhostSites(ctx, g, func(st *ghostsite.Store) error {
		removed, err := st.Disconnect(ctx, c.Site, ghostHTTP)
		if err != nil {
			return err
		}
		fmt.Printf("disconnected Ghost site %s: deleted %d webhook(s) on the site\n", c.Site, len(removed))
		return nil
	})
}

func withGhostSites(ctx context.Context, g *Globals, fn func(*ghostsite.Store) error) error {
	return g.withDB(ctx, func(db *database) error {
		st, err := g.ghostSites(db)
		if err != nil {
			return err
		}
		return fn(st)
	})
}
