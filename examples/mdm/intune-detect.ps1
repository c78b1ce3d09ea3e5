# Intune custom compliance discovery script for thoth (Windows).
#
# Upload under Endpoint security > Device compliance > Scripts, with
# intune-rules.json as the rules file. Intune runs it as SYSTEM, so it asks thoth
# about every user profile (--all-users) and returns thoth's one-line JSON, whose flat
# PascalCase scalars the rules address. Intune needs compact JSON on stdout and
# nothing else, which is exactly what `thoth health --json` prints.
$ErrorActionPreference = "Stop"
$thoth = Join-Path $env:ProgramFiles "Thoth\thoth.exe"
if (-not (Test-Path $thoth)) {
    # Not installed: every rule fails, with its own remediation text.
    Write-Output '{"SchemaVersion":1,"Status":"fail","Healthy":false,"ServersUnwrapped":-1,"Registered":false}'
    exit 0
}
$json = & $thoth health --all-users --json 2>$null
if (-not $json) {
    Write-Output '{"SchemaVersion":1,"Status":"fail","Healthy":false,"ServersUnwrapped":-1,"Registered":false}'
    exit 0
}
# The checks object is for humans; Intune only reads the flat keys, so drop it.
$health = $json | ConvertFrom-Json
$health.PSObject.Properties.Remove("checks")
Write-Output ($health | ConvertTo-Json -Compress)
