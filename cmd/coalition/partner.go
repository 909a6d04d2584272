package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/coalitionexchange/coalition/cmd/coalition/internal/vault"
	"github.com/coalitionexchange/coalition/gateway"
	"github.com/coalitionexchange/coalition/gateway/devca"
)

// devPartnerCertValidFor is the life of a dev partner certificate.
const devPartnerCertValidFor = 30 * 24 * time.Hour

// newPartnerCmd groups the commands that onboard and manage partners.
func newPartnerCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "partner",
		Short: "Onboard and manage partners: certificates from CSRs, dev certificates",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newPartnerSignCSRCmd(e), newPartnerIssueCertCmd(e))
	cmd.AddCommand(partnerAdminCommands(e)...)
	cmd.AddCommand(newPartnerConfigureCmd(e)) // issue 4: endpoint, timeouts, ratio, events
	return cmd
}

func newPartnerSignCSRCmd(e *env) *cobra.Command {
	var v vaultOptions
	var partnerID, csrFile, outFile, role, trustDomain string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "sign-csr --partner ID --csr FILE --out FILE",
		Short: "Sign a partner's CSR through Vault PKI for its SPIFFE ID only",
		Long: `sign-csr signs a partner's certificate signing request with the Vault PKI role of the
partner (default partner-<ID>, whose allowed_uri_sans is that partner's URI alone), so that the
partner's private key never leaves the partner. The certificate carries exactly one URI SAN,
spiffe://<trust-domain>/partner/<ID>. A CSR that asks for another partner's URI SAN, several URI
SANs, any DNS name, IP or email address, or whose signature does not verify is refused before
Vault is called. Authenticate with VAULT_TOKEN or the --vault-approle-* flags.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if partnerID == "" || csrFile == "" || outFile == "" {
				return errors.New("--partner, --csr and --out are required")
			}
			csrPEM, err := os.ReadFile(csrFile)
			if err != nil {
				return fmt.Errorf("read csr: %w", err)
			}
			// Refuse a bad CSR before anything reaches Vault.
			if _, err := vault.CheckPartnerCSR(csrPEM, trustDomain, partnerID); err != nil {
				return fmt.Errorf("refusing csr %s for partner %s: %w", csrFile, partnerID, err)
			}
			client, err := v.client(cmd.Context(), e, newLogger(e.stderr, "text"))
			if err != nil {
				return err
			}
			signed, err := client.SignPartnerCSR(cmd.Context(), vault.SignPartnerCSRRequest{
				PartnerID: partnerID, CSRPEM: csrPEM, TrustDomain: trustDomain, Mount: v.pkiMount,
				Role: vaultRole(role, partnerID), TTL: ttl,
			})
			if err != nil {
				return err
			}
			if err := os.WriteFile(outFile, signed.ChainPEM, 0o644); err != nil {
				return fmt.Errorf("write certificate: %w", err)
			}
			_, err = fmt.Fprintf(e.stdout, "%s -> %s\n",
				describeCert(vault.PartnerURI(trustDomain, partnerID), signed.Leaf.SerialNumber.Text(16), signed.Leaf.NotAfter), outFile)
			return err
		},
	}
	f := cmd.Flags()
	v.registerClient(f)
	f.StringVar(&partnerID, "partner", "", "partner id, e.g. acme-air")
	f.StringVar(&csrFile, "csr", "", "the partner's CSR (PEM)")
	f.StringVar(&outFile, "out", "", "where to write the certificate chain (PEM) to send back to the partner")
	f.StringVar(&role, "vault-role", "", "PKI role to sign with (default partner-<ID>)")
	f.StringVar(&trustDomain, "trust-domain", gateway.DefaultTrustDomain, "SPIFFE trust domain")
	f.DurationVar(&ttl, "ttl", 0, "certificate TTL (default the role's)")
	return cmd
}

func newPartnerIssueCertCmd(e *env) *cobra.Command {
	var partnerID, certsDir string
	cmd := &cobra.Command{
		Use:   "issue-cert --partner ID --certs-dir DIR",
		Short: "Dev only: issue a partner certificate and key from the dev CA in DIR",
		Long: `issue-cert issues a client certificate for spiffe://coalition.local/partner/<ID> from the
dev CA (DIR/ca.crt and DIR/ca.key, as coalition dev creates them) and writes
DIR/partner-<ID>.crt and DIR/partner-<ID>.key. It is for development only: the key is created
here, not by the partner. Production partners send a CSR to sign-csr.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if partnerID == "" || certsDir == "" {
				return errors.New("--partner and --certs-dir are required")
			}
			if err := vault.CheckPartnerID(partnerID); err != nil {
				return err
			}
			certPEM, err := os.ReadFile(filepath.Join(certsDir, "ca.crt"))
			if err != nil {
				return fmt.Errorf("read dev ca: %w", err)
			}
			keyPEM, err := os.ReadFile(filepath.Join(certsDir, "ca.key"))
			if err != nil {
				return fmt.Errorf("read dev ca key: %w", err)
			}
			ca, err := devca.Load(certPEM, keyPEM)
			if err != nil {
				return err
			}
			cert, err := ca.IssueClient("partner", partnerID, time.Now(), devPartnerCertValidFor)
			if err != nil {
				return err
			}
			leafPEM, leafKey, err := devca.EncodePEM(cert)
			if err != nil {
				return err
			}
			base := filepath.Join(certsDir, "partner-"+partnerID)
			if err := os.WriteFile(base+".key", leafKey, 0o600); err != nil {
				return fmt.Errorf("write key: %w", err)
			}
			if err := os.WriteFile(base+".crt", leafPEM, 0o644); err != nil {
				return fmt.Errorf("write certificate: %w", err)
			}
			_, err = fmt.Fprintf(e.stdout, "%s -> %s.crt, %s.key\n",
				describeCert(vault.PartnerURI(devca.TrustDomain, partnerID), cert.Leaf.SerialNumber.Text(16), cert.Leaf.NotAfter), base, base)
			return err
		},
	}
	cmd.Flags().StringVar(&partnerID, "partner", "", "partner id, e.g. acme-air")
	cmd.Flags().StringVar(&certsDir, "certs-dir", "", "directory holding the dev CA (ca.crt, ca.key)")
	return cmd
}
