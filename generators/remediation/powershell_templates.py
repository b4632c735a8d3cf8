"""PowerShell script bodies (Windows PowerShell 5.1 or PowerShell 7 on Windows). Each runs after the generated
preamble, which sets the parameter variables (PascalCase parameter names; ``pid`` becomes ``$TargetPid``, since
``$PID`` is PowerShell's own), ``$Apply`` and ``Test-Apply`` (announces a step, true only when applying).
"""

from __future__ import annotations

CPU_HIGH = """
# Total processor seconds of a process, or $null where access is denied.
function Get-CpuSecond {
    param([Parameter(Mandatory = $true)][Diagnostics.Process]$Process)
    try { return $Process.TotalProcessorTime.TotalSeconds } catch { return $null }
}

Write-Output "Logical CPUs: $([Environment]::ProcessorCount)"
$before = @{}
foreach ($process in Get-Process) {
    $seconds = Get-CpuSecond -Process $process
    if ($null -ne $seconds) { $before[$process.Id] = $seconds }
}
$clock = [Diagnostics.Stopwatch]::StartNew()
Start-Sleep -Seconds 1
$elapsed = $clock.Elapsed.TotalSeconds
$rows = foreach ($process in Get-Process) {
    $seconds = Get-CpuSecond -Process $process
    if ($null -ne $seconds -and $before.ContainsKey($process.Id)) {
        [pscustomobject]@{
            Id           = $process.Id
            Name         = $process.ProcessName
            CpuPercent   = [math]::Round(100 * ($seconds - $before[$process.Id]) / $elapsed, 1)
            WorkingSetMB = [math]::Round($process.WorkingSet64 / 1MB, 1)
        }
    }
}
$usage = @($rows | Sort-Object -Property CpuPercent -Descending | Select-Object -First $Top)
Write-Output "Top $Top processes by CPU over the last second (percent of one core):"
$usage | Show-Table

function Set-LowerPriority {
    param([Parameter(Mandatory = $true)][long]$Id)
    if ($Id -eq $PID -or $Id -le 4) {
        Write-Output "PID ${Id}: refusing to change this script or a system process"
        return
    }
    $process = Get-Process -Id $Id -ErrorAction SilentlyContinue
    if ($null -eq $process) {
        Write-Output "PID $Id is not running; skipping"
        return
    }
    if (Test-Apply "set the priority class of $($process.ProcessName) (PID $Id) to $Priority") {
        try {
            $process.PriorityClass = [Diagnostics.ProcessPriorityClass]$Priority
        } catch {
            Write-Warning "could not change PID ${Id}: $($_.Exception.Message) (run elevated for other users)"
        }
    }
}

if ($null -ne $TargetPid) {
    Set-LowerPriority -Id $TargetPid
} else {
    $offenders = @($usage | Where-Object { $_.CpuPercent -gt $ThresholdPercent })
    if ($offenders.Count -eq 0) {
        Write-Output "No process is above $ThresholdPercent% CPU: nothing to change."
    } else {
        Write-Output "Processes above $ThresholdPercent% CPU (priority class -> $Priority):"
        foreach ($offender in $offenders) { Set-LowerPriority -Id $offender.Id }
    }
}
"""

MEMORY_HIGH = """
$os = Get-CimInstance -ClassName Win32_OperatingSystem
$totalMB = [math]::Round($os.TotalVisibleMemorySize / 1KB)
$freeMB = [math]::Round($os.FreePhysicalMemory / 1KB)
$usedPercent = 100 * ($totalMB - $freeMB) / $totalMB
Write-Output ('Physical memory: {0} MB free of {1} MB ({2:N1}% used)' -f $freeMB, $totalMB, $usedPercent)
$commitFreeMB = [math]::Round($os.FreeVirtualMemory / 1KB)
$commitTotalMB = [math]::Round($os.TotalVirtualMemorySize / 1KB)
Write-Output "Commit charge (RAM + page file): $commitFreeMB MB free of $commitTotalMB MB"

Write-Output ''
Write-Output "Top $Top processes by working set:"
Get-Process |
    Sort-Object -Property WorkingSet64 -Descending |
    Select-Object -First $Top -Property Id, ProcessName,
        @{ Name = 'WorkingSetMB'; Expression = { [math]::Round($_.WorkingSet64 / 1MB, 1) } },
        @{ Name = 'PrivateMB'; Expression = { [math]::Round($_.PrivateMemorySize64 / 1MB, 1) } } |
    Show-Table

Write-Output 'Low-memory warnings (Resource-Exhaustion-Detector, last 24 h):'
try {
    $filter = @{
        LogName      = 'System'
        ProviderName = 'Microsoft-Windows-Resource-Exhaustion-Detector'
        StartTime    = (Get-Date).AddDays(-1)
    }
    Get-WinEvent -FilterHashtable $filter -MaxEvents 5 | Select-Object -Property TimeCreated, Message | Show-Table
} catch {
    Write-Output 'none found'
}

if ($null -ne $RestartService) {
    $found = Get-Service -Name $RestartService -ErrorAction SilentlyContinue
    if ($null -eq $found) {
        Write-Warning "service $RestartService not found (Get-Service lists them); skipping the restart"
    } elseif (Test-Apply "Restart-Service -Name $RestartService") {
        Restart-Service -Name $RestartService
        Write-Output "Status after the restart: $((Get-Service -Name $RestartService).Status)"
    }
}
"""

DISK_FULL = """
# Files under a folder last written before the cutoff. Links and junctions are not entered: they may lead
# outside the folder.
function Get-OldFile {
    param([Parameter(Mandatory = $true)][string]$Folder, [Parameter(Mandatory = $true)][datetime]$Cutoff)
    foreach ($item in Get-ChildItem -LiteralPath $Folder -Force -ErrorAction SilentlyContinue) {
        if ($item.Attributes -band [IO.FileAttributes]::ReparsePoint) { continue }
        if ($item.PSIsContainer) {
            Get-OldFile -Folder $item.FullName -Cutoff $Cutoff
        } elseif ($item.LastWriteTime -lt $Cutoff) {
            $item
        }
    }
}

Write-Output 'Drives:'
Get-PSDrive -PSProvider FileSystem |
    Select-Object -Property Name, Root,
        @{ Name = 'UsedGB'; Expression = { [math]::Round([double]$_.Used / 1GB, 1) } },
        @{ Name = 'FreeGB'; Expression = { [math]::Round([double]$_.Free / 1GB, 1) } } |
    Show-Table

if (-not (Test-Path -LiteralPath $ScanPath -PathType Container)) {
    throw "scan_path $ScanPath is not a folder"
}
Write-Output "Largest folders under $ScanPath (may take a while):"
$folders = foreach ($folder in Get-ChildItem -LiteralPath $ScanPath -Directory -Force -ErrorAction SilentlyContinue) {
    $measure = Get-ChildItem -LiteralPath $folder.FullName -File -Recurse -Force -ErrorAction SilentlyContinue |
        Measure-Object -Property Length -Sum
    $bytes = if ($measure) { [double]$measure.Sum } else { 0.0 }
    [pscustomobject]@{ Folder = $folder.FullName; SizeGB = [math]::Round($bytes / 1GB, 2) }
}
@($folders) | Sort-Object -Property SizeGB -Descending | Select-Object -First $Top | Show-Table

if ($null -ne $CleanDir) {
    if (-not (Test-Path -LiteralPath $CleanDir -PathType Container)) {
        Write-Warning "clean_dir $CleanDir is not a folder: skipping the clean-up"
    } else {
        $cutoff = (Get-Date).AddDays(-$OlderThanDays)
        $old = @(Get-OldFile -Folder $CleanDir -Cutoff $cutoff)
        $oldBytes = 0.0
        foreach ($file in $old) { $oldBytes += $file.Length }
        $summary = 'Files in {0} last written more than {1} days ago: {2} files, {3:N1} MB'
        Write-Output ($summary -f $CleanDir, $OlderThanDays, $old.Count, ($oldBytes / 1MB))
        $old | Select-Object -First 20 -ExpandProperty FullName | Write-Output
        if ($old.Count -eq 0) {
            Write-Output 'Nothing to delete.'
        } elseif (Test-Apply "delete these $($old.Count) files") {
            foreach ($file in $old) { Remove-Item -LiteralPath $file.FullName -Force -ErrorAction Continue }
        }
    }
}

Write-Output ''
Write-Output 'Other usual suspects: Disk Cleanup (cleanmgr) and the component store'
Write-Output '(Dism /Online /Cleanup-Image /StartComponentCleanup).'
"""

PROCESS_MEMORY_HIGH = """
$units = @{ K = 1KB; M = 1MB; G = 1GB; T = 1TB }
$limitBytes = ([long]($MaxRss.Substring(0, $MaxRss.Length - 1))) * $units[$MaxRss.Substring($MaxRss.Length - 1)]
if ($TargetPid -eq $PID -or $TargetPid -le 4) {
    throw "PID $TargetPid is this script or a system process: refusing to act on it"
}
$process = Get-Process -Id $TargetPid -ErrorAction SilentlyContinue
if ($null -eq $process) {
    Write-Output "PID $TargetPid is not running: nothing to do."
    exit 0
}

$workingSet = $process.WorkingSet64
$line = 'Process {0} ({1}): working set {2:N1} MB, private {3:N1} MB, handles {4}'
$privateMB = $process.PrivateMemorySize64 / 1MB
Write-Output ($line -f $process.Id, $process.ProcessName, ($workingSet / 1MB), $privateMB, $process.HandleCount)
try { Write-Output "Path: $($process.Path)" } catch { Write-Output 'Path: unknown (access denied)' }

if ($workingSet -le $limitBytes) {
    Write-Output "Working set is within the limit $MaxRss ($limitBytes bytes): nothing to do."
    exit 0
}
Write-Output "Working set exceeds the limit $MaxRss ($limitBytes bytes)."
if (Test-Apply "ask PID $TargetPid to close, then Stop-Process -Id $TargetPid -Force after $GraceSeconds s") {
    $null = $process.CloseMainWindow()
    if ($process.WaitForExit([int]$GraceSeconds * 1000)) {
        Write-Output "PID $TargetPid exited."
    } else {
        Stop-Process -Id $TargetPid -Force
        Write-Output "PID $TargetPid stopped."
    }
}
"""

SERVICE_RESTART = """
$found = Get-Service -Name $Service -ErrorAction SilentlyContinue
if ($null -eq $found) {
    throw "service $Service not found (Get-Service lists them)"
}
$found | Select-Object -Property Name, DisplayName, Status, StartType | Format-List | Out-String | Write-Output

if ($LogLines -gt 0) {
    Write-Output "Recent Service Control Manager events about $($found.DisplayName) (last 7 days):"
    $filter = @{ LogName = 'System'; ProviderName = 'Service Control Manager'; StartTime = (Get-Date).AddDays(-7) }
    try {
        $events = @(Get-WinEvent -FilterHashtable $filter -MaxEvents 500 |
            Where-Object { $null -ne $_.Message -and $_.Message.Contains($found.DisplayName) } |
            Select-Object -First $LogLines)
    } catch {
        $events = @()
    }
    if ($events.Count -eq 0) {
        Write-Output 'none found'
    } else {
        $events | Select-Object -Property TimeCreated, Id, Message | Show-Table
    }
}

if (Test-Apply "Restart-Service -Name $Service") {
    Restart-Service -Name $Service
    Start-Sleep -Seconds 2
    $status = (Get-Service -Name $Service).Status
    Write-Output "Status after the restart: $status"
    if ($status -ne 'Running') {
        throw "service $Service is $status after the restart; read the System event log"
    }
}
"""

DISK_HEALTH = """
if (-not (Test-Path -LiteralPath $ScanPath)) {
    throw "scan_path $ScanPath does not exist"
}
$drive = (Get-Item -LiteralPath $ScanPath -Force).PSDrive
$total = [double]$drive.Used + [double]$drive.Free
if ($total -gt 0) {
    $freePercent = [math]::Round(100 * [double]$drive.Free / $total, 1)
    $line = 'Drive {0}: {1:N1} GB free of {2:N1} GB ({3}% free)'
    Write-Output ($line -f $drive.Name, ($drive.Free / 1GB), ($total / 1GB), $freePercent)
    if ($freePercent -lt $MinFreePercent) {
        Write-Output "WARNING: free space is below $MinFreePercent%"
    } else {
        Write-Output "OK: free space is at least $MinFreePercent%"
    }
}

Write-Output ''
if (Get-Command -Name Get-PhysicalDisk -ErrorAction SilentlyContinue) {
    Write-Output 'Physical disks:'
    Get-PhysicalDisk |
        Select-Object -Property FriendlyName, MediaType, HealthStatus, OperationalStatus,
            @{ Name = 'SizeGB'; Expression = { [math]::Round($_.Size / 1GB, 1) } } |
        Show-Table
    Write-Output 'Reliability counters (elevation needed):'
    try {
        Get-PhysicalDisk | Get-StorageReliabilityCounter |
            Select-Object -Property DeviceId, Temperature, ReadErrorsUncorrected, WriteErrorsUncorrected,
                Wear, PowerOnHours |
            Show-Table
    } catch {
        Write-Output "not available: $($_.Exception.Message)"
    }
} else {
    Write-Output 'Get-PhysicalDisk is not available here (Windows 8 / Server 2012 or later has it).'
}

Write-Output 'Disk and file-system errors in the System log (last 7 days):'
$filter = @{
    LogName      = 'System'
    ProviderName = 'disk', 'Ntfs', 'storahci', 'stornvme'
    Level        = 1, 2, 3
    StartTime    = (Get-Date).AddDays(-7)
}
try {
    Get-WinEvent -FilterHashtable $filter -MaxEvents 20 |
        Select-Object -Property TimeCreated, ProviderName, Id, Message |
        Show-Table
} catch {
    Write-Output 'none found'
}

if (Get-Command -Name Repair-Volume -ErrorAction SilentlyContinue) {
    if (Test-Apply "Repair-Volume -DriveLetter $($drive.Name) -Scan (an online scan; it repairs nothing)") {
        Repair-Volume -DriveLetter $drive.Name -Scan | Write-Output
    }
}
"""

POWERSHELL_BODIES: dict[str, str] = {
    "cpu_high": CPU_HIGH,
    "memory_high": MEMORY_HIGH,
    "disk_full": DISK_FULL,
    "process_memory_high": PROCESS_MEMORY_HIGH,
    "service_restart": SERVICE_RESTART,
    "disk_health": DISK_HEALTH,
}
