// Preloaded with --import: prints the process's peak resident memory at exit, as the last line.
process.on("exit", () => {
  process.stdout.write(`\n${JSON.stringify({ max_rss_kb: process.resourceUsage().maxRSS })}\n`);
});
